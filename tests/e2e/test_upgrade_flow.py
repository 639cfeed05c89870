"""The upgrade to Pro in a real browser, against the Creem stand-in served over HTTP.

A free user at 0 credits meets the upgrade modal, pays on the stand-in's checkout page, comes
back to the feature with "Welcome to Pro" once the webhooks (delivered by the stand-in to the
live server, applied by the real rq worker) made them Pro, generates beyond the 6 free
credits, cancels, keeps Pro until the period end, and is back on the free plan with the old
balance after it (the period-end sweep run with the clock moved past the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import func, select

from credit_app.billing import subscriptions
from credit_app.generation.features import FEATURES
from credit_app.models import Generation, Subscription, WebhookEvent
from credit_app.models.generation import GenerationStatus
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits
from credit_app.testing.creem import (
    WEBHOOK_PATH,
    CreemStandIn,
    create_stand_in_app,
    serve_stand_in,
)
from tests.creem_support import delete_stand_in_rows
from tests.e2e.pages import Roomcraft

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]

FEATURE = FEATURES["interior"]
PLAN = "Pro monthly"
WEBHOOK_TIMEOUT = 20
# Prices and plan buttons that take more than one line (or overflow their tile).
_WRAPPED_PLAN_TEXT = """
const lines = function (el) {
  const range = document.createRange();
  range.selectNodeContents(el);
  return new Set([...range.getClientRects()].map(rect => Math.round(rect.top))).size;
};
return [...document.querySelectorAll("#plans .feature-tile .big-number, #plans button")]
  .filter(el => lines(el) > 1 || el.scrollWidth > el.clientWidth)
  .map(el => el.textContent.trim());
"""


@dataclass
class Creem:
    """The stand-in the app talks to during the test, and its base URL."""

    stand_in: CreemStandIn
    url: str


@pytest.fixture
def creem(app: Flask, live_server: str, creem_port: int) -> Iterator[Creem]:
    """The Creem stand-in on the port the worker knows, sending its signed webhooks to the
    live server, and the app pointed at it; what it created in the database is deleted
    afterwards."""
    stand_in = CreemStandIn(
        app.config["CREEM_API_KEY"],
        app.config["CREEM_WEBHOOK_SECRET"],
        webhook_url=live_server + WEBHOOK_PATH,
        retry_delays=(),
    )
    with (
        serve_stand_in(create_stand_in_app(stand_in), port=creem_port) as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setitem(app.config, "CREEM_API_URL", url)
        patch.delitem(app.extensions, "creem_client", raising=False)
        try:
            yield Creem(stand_in, url)
        finally:
            cached = app.extensions.get("creem_client")
            if cached is not None and cached[0][0] == url:
                cached[1].close()
            delete_stand_in_rows(stand_in)


def spend_all_credits(email: str) -> int:
    """Use up the user's credits through the service (the dashboard E2E spends them through
    the UI); returns the user's id."""
    user = accounts.find_user_by_email(email)
    assert user is not None, f"{email} did not sign up"
    for _ in range(user.credits_remaining):
        credits.consume_credit(user.id, FEATURE.key)
        db.session.commit()
    assert credits.get_user_credits(user.id).remaining == 0
    return user.id


def run_out_of_credits(roomcraft: Roomcraft, photo: Path) -> tuple[str, int, WebElement]:
    """Sign up, spend the welcome credits (through the service), then try to generate with
    `photo`: returns the email, the user's id and the upgrade dialog that opened."""
    email = roomcraft.sign_up()
    roomcraft.wait_for_counter("6/6")
    user_id = spend_all_credits(email)
    roomcraft.driver.refresh()
    roomcraft.wait_for_counter("0/6")
    roomcraft.go_to_feature(FEATURE.key)
    roomcraft.choose_photo(photo)
    roomcraft.generate()
    return email, user_id, roomcraft.wait_for_dialog()


def applied_events(stand_in: CreemStandIn) -> bool:
    """Whether every event the stand-in sent was answered 200 and applied by the worker."""
    with stand_in.lock:
        sent = {event.id: list(event.statuses) for event in stand_in.events}
    failed = {
        event_id: statuses
        for event_id, statuses in sent.items()
        if statuses and statuses[-1] != 200
    }
    assert not failed, f"the app refused webhooks: {failed}"
    if not all(sent.values()):
        return False
    rows = db.session.execute(
        select(WebhookEvent.event_id, WebhookEvent.processed_at, WebhookEvent.last_error).where(
            WebhookEvent.event_id.in_(list(sent))
        )
    ).all()
    db.session.rollback()
    errors = {row.event_id: row.last_error for row in rows if row.last_error}
    assert not errors, f"the worker failed on webhooks: {errors}"
    return len(rows) == len(sent) and all(row.processed_at is not None for row in rows)


def succeeded_generations(user_id: int) -> int:
    """How many of the user's generations finished with a result."""
    count = db.session.execute(
        select(func.count())
        .select_from(Generation)
        .where(Generation.user_id == user_id, Generation.status == GenerationStatus.SUCCEEDED)
    ).scalar_one()
    db.session.rollback()
    return count


def period_end(user_id: int) -> datetime:
    """When the user's canceled subscription stops giving Pro."""
    ends = db.session.execute(
        select(Subscription.access_ends_at).where(Subscription.user_id == user_id)
    ).scalar_one()
    db.session.rollback()
    assert ends is not None, "the canceled subscription has no end of access"
    return ends


def sidebar_unlimited(roomcraft: Roomcraft) -> bool:
    """Whether the sidebar's credit panel shows Pro's "Unlimited" instead of a count."""
    panel = roomcraft.find("#sidebar-credits")
    return (
        panel.get_attribute("data-unlimited") == "true"
        and panel.find_element(By.CSS_SELECTOR, ".credits-count strong").text == "Unlimited"
    )


def wait_for_unlimited(roomcraft: Roomcraft) -> None:
    """Wait for the sidebar to say Unlimited (the confirmation poll swaps it in)."""
    roomcraft.wait().until(
        lambda _: sidebar_unlimited(roomcraft), "the sidebar does not say Unlimited"
    )


def choose_plan(roomcraft: Roomcraft, creem: Creem) -> None:
    """Choose PLAN on the subscription page and wait for the stand-in's checkout page."""
    roomcraft.find("#plans").find_element(
        By.XPATH, f".//button[normalize-space()='Choose {PLAN}']"
    ).click()
    roomcraft.wait().until(
        lambda _: roomcraft.driver.current_url.startswith(f"{creem.url}/checkout/"),
        "the plan did not lead to the stand-in's checkout",
    )


def current_plan(roomcraft: Roomcraft) -> WebElement:
    """The "Your plan" card of the subscription page."""
    return roomcraft.find("#current-plan")


def generate_once(roomcraft: Roomcraft, photo: Path) -> str:
    """Choose the photo, press Generate and wait for this generation's result; its text."""
    previous = roomcraft.driver.find_elements(By.CSS_SELECTOR, "#generation-result > *")
    roomcraft.choose_photo(photo)
    roomcraft.generate()
    if previous:
        roomcraft.wait().until(ec.staleness_of(previous[0]), "the result panel did not reset")
    return roomcraft.wait_for_result()


def test_a_free_user_upgrades_generates_cancels_and_is_free_after_the_period(
    roomcraft: Roomcraft, creem: Creem, images: dict[str, Path]
) -> None:
    photo = images["room"]
    email, user_id, dialog = run_out_of_credits(roomcraft, photo)
    assert "You've used all your free credits!" in dialog.text
    dialog.find_element(By.LINK_TEXT, "Upgrade Now").click()

    roomcraft.wait().until(lambda _: roomcraft.path == "/dashboard/subscription")
    assert roomcraft.query.get("feature") == [FEATURE.key]
    assert f"You were about to use {FEATURE.title}" in roomcraft.find("main").text
    assert "Free: 0 of 6 credits left" in current_plan(roomcraft).text
    assert roomcraft.script(_WRAPPED_PLAN_TEXT) == [], "plan prices or buttons wrap"

    choose_plan(roomcraft, creem)
    assert roomcraft.find("h1").text == f"Subscribe to {PLAN}"
    assert roomcraft.find("input[name=email]").get_attribute("value") == email
    (checkout,) = creem.stand_in.checkouts.values()
    assert checkout.metadata == {
        "user_id": str(user_id),
        "plan": "pro_monthly",
        "feature": FEATURE.key,
    }
    roomcraft.screenshots("checkout-page")

    creem.stand_in.hold()
    roomcraft.find("button.pay").click()
    roomcraft.wait().until(
        lambda _: roomcraft.path == f"/dashboard/{FEATURE.slug}",
        "Pay did not lead back to the feature",
    )
    assert roomcraft.query.get("checkout") == ["success"]
    assert "Payment received, thank you!" in roomcraft.find("main").text
    confirmation = roomcraft.find("#checkout-confirmation")
    assert confirmation.get_attribute("data-state") == "confirming"
    assert "Confirming your payment" in confirmation.text
    assert roomcraft.counter() == "0/6", "Pro before any webhook arrived"
    roomcraft.screenshots("checkout-confirming")

    released = creem.stand_in.release()
    assert [event.event_type for event in released] == [
        "checkout.completed",
        "subscription.active",
        "subscription.paid",
    ]
    roomcraft.wait(WEBHOOK_TIMEOUT).until(
        lambda _: roomcraft.find("#checkout-confirmation").get_attribute("data-state") == "welcome",
        "the page never welcomed the user to Pro",
    )
    assert "Welcome to Pro!" in roomcraft.find("#checkout-confirmation").text
    wait_for_unlimited(roomcraft)
    assert roomcraft.find(".cost-note").text == "Unlimited on Pro"
    roomcraft.screenshots("welcome-to-pro")

    for done in (1, 2):
        assert f"Done! {FEATURE.title} finished" in generate_once(roomcraft, photo)
        assert succeeded_generations(user_id) == done
        balance = credits.get_user_credits(user_id)
        assert (balance.remaining, balance.unlimited) == (0, True)
        assert sidebar_unlimited(roomcraft)
    roomcraft.screenshots("pro-unlimited")

    roomcraft.driver.refresh()
    assert "checkout-confirmation" not in roomcraft.driver.page_source, "welcomed twice"
    roomcraft.open("/dashboard/subscription")
    plan = current_plan(roomcraft)
    assert "Pro: unlimited generations" in plan.text
    assert (
        plan.find_element(By.CSS_SELECTOR, "[data-subscription-status]").get_attribute(
            "data-subscription-status"
        )
        == "active"
    )
    plan.find_element(By.LINK_TEXT, "Cancel subscription").click()
    confirm = roomcraft.wait().until(
        lambda _: roomcraft.driver.find_elements(By.CSS_SELECTOR, '[role="alertdialog"]'),
        "cancelling did not ask first",
    )[0]
    assert "Cancel Pro?" in confirm.text
    assert "with the 0 credits you have now" in confirm.text
    roomcraft.screenshots("cancel-confirmation")
    confirm.find_element(By.XPATH, ".//button[normalize-space()='Yes, cancel']").click()

    roomcraft.wait().until(
        lambda _: (
            "Your subscription is canceled. You keep Pro until" in roomcraft.find("main").text
        ),
        "no word that the cancel worked",
    )
    assert roomcraft.query.get("confirm") is None
    roomcraft.wait(WEBHOOK_TIMEOUT).until(
        lambda _: applied_events(creem.stand_in), "the webhooks were not all applied"
    )
    ends = period_end(user_id)
    plan = current_plan(roomcraft)
    assert "Pro: unlimited generations" in plan.text
    assert "Canceled: you keep Pro until" in plan.text
    until = plan.find_element(By.CSS_SELECTOR, "[data-subscription-status] time")
    assert datetime.fromisoformat(until.get_attribute("datetime")) == ends
    assert until.text == ends.strftime("%d %B %Y")
    assert ends - datetime.now(ends.tzinfo) > timedelta(days=29)
    assert sidebar_unlimited(roomcraft)
    assert not roomcraft.driver.find_elements(By.LINK_TEXT, "Cancel subscription")
    roomcraft.screenshots("canceled-keeps-pro")

    assert subscriptions.downgrade_lapsed(now=ends - timedelta(seconds=1)) == []
    assert subscriptions.downgrade_lapsed(now=ends + timedelta(seconds=1)) == [user_id]
    db.session.commit()

    roomcraft.driver.refresh()
    roomcraft.wait_for_counter("0/6")
    plan = current_plan(roomcraft)
    assert "Free: 0 of 6 credits left" in plan.text
    assert f"Canceled, ended {ends:%d %B %Y}." in plan.text
    assert roomcraft.find("#plans").is_displayed()
    assert roomcraft.script(_WRAPPED_PLAN_TEXT) == [], "plan prices or buttons wrap"
    roomcraft.screenshots("back-to-free")

    roomcraft.go_to_feature(FEATURE.key)
    assert roomcraft.counter() == "0/6"
    roomcraft.choose_photo(photo)
    roomcraft.generate()
    assert FEATURE.title in roomcraft.wait_for_dialog().text
    assert succeeded_generations(user_id) == 2


def test_a_pro_user_switches_monthly_to_yearly_after_reading_what_changes(
    roomcraft: Roomcraft, creem: Creem
) -> None:
    email = roomcraft.sign_up()
    roomcraft.open("/dashboard/subscription")
    choose_plan(roomcraft, creem)
    roomcraft.find("button.pay").click()
    roomcraft.wait().until(
        lambda _: roomcraft.path == "/dashboard/subscription",
        "Pay did not lead back to the subscription page",
    )
    roomcraft.wait(WEBHOOK_TIMEOUT).until(
        lambda _: len(creem.stand_in.events) >= 3 and applied_events(creem.stand_in),
        "the webhooks were not all applied",
    )
    user = accounts.find_user_by_email(email)
    assert credits.get_user_credits(user.id).unlimited
    db.session.rollback()

    roomcraft.open("/dashboard/subscription")
    current_plan(roomcraft).find_element(By.LINK_TEXT, "Switch to Pro yearly").click()
    dialog = roomcraft.wait().until(
        lambda _: roomcraft.driver.find_elements(By.CSS_SELECTOR, '[role="alertdialog"]'),
        "switching did not ask first",
    )[0]
    assert "Switch to Pro yearly?" in dialog.text
    assert "charges you today" in dialog.text and "$190 / year" in dialog.text
    roomcraft.screenshots("switch-confirmation")
    roomcraft.find('[role="alertdialog"]').find_element(
        By.XPATH, ".//button[normalize-space()='Yes, switch to Pro yearly']"
    ).click()
    roomcraft.wait().until(
        lambda _: "You are on Pro yearly now." in roomcraft.find("main").text,
        "no word that the switch worked",
    )
    (subscription,) = creem.stand_in.subscriptions.values()
    assert subscription.product.name == "Pro yearly"
    assert "Pro yearly" in current_plan(roomcraft).text
    assert current_plan(roomcraft).find_element(By.LINK_TEXT, "Switch to Pro monthly")
    roomcraft.screenshots("switched-to-yearly")
    roomcraft.wait(WEBHOOK_TIMEOUT).until(
        lambda _: len(creem.stand_in.events) >= 5 and applied_events(creem.stand_in),
        "the switch's webhooks were not all applied",
    )
    assert credits.get_user_credits(user.id).unlimited
