"""Fair use for Pro in a real browser: a Pro user past the day's mark still gets a result
(the real worker reads the fair-use queue after the others) and sees a calm note on the
feature page and while a design waits; admins see the usage, the reconciliation report and the
export links. Screenshots at 1440 and 390 px."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import delete, select

from credit_app.billing import subscriptions
from credit_app.jobs.registry import GENERATION_FAIR_USE_QUEUE, GENERATION_QUEUE
from credit_app.models import (
    Generation,
    ReconciliationFinding,
    ReconciliationRun,
    Subscription,
    User,
    UserRole,
    WebhookEvent,
)
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db
from credit_app.services import accounts
from credit_app.testing.creem import CreemStandIn, create_stand_in_app, serve_stand_in
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD
from tests.creem_support import apply_events, subscribe
from tests.e2e.pages import _TRANSITIONS_DONE as TRANSITIONS_DONE
from tests.e2e.pages import Roomcraft

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]

NOTE = "[data-fair-use-note]"


def make_pro(app: Flask, email: str) -> None:
    """Give the signed-up user a running Pro subscription, as the webhooks would."""
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one()
        now = utcnow()
        db.session.add(
            Subscription(
                user_id=user.id,
                creem_subscription_id=f"e2e_sub_{uuid.uuid4().hex[:12]}",
                product_id=app.config["CREEM_PRODUCT_PRO_MONTHLY"],
                status="active",
                current_period_start=now,
                current_period_end=now + timedelta(days=30),
                last_event_at=now,
            )
        )
        db.session.flush()
        subscriptions.sync_user_plan(user.id, now, "payment received")
        db.session.commit()
        db.session.remove()


def generations_of(app: Flask, email: str) -> list[Generation]:
    with app.app_context():
        rows = list(
            db.session.execute(
                select(Generation)
                .join(User, User.id == Generation.user_id)
                .where(User.email == email)
                .order_by(Generation.id)
            ).scalars()
        )
        db.session.expunge_all()
        db.session.remove()
    return rows


def remove_subscriptions(app: Flask, email: str) -> None:
    with app.app_context():
        user_id = db.session.execute(select(User.id).where(User.email == email)).scalar_one()
        db.session.execute(delete(Subscription).where(Subscription.user_id == user_id))
        db.session.commit()
        db.session.remove()


def generate_interior(roomcraft: Roomcraft, image: Path) -> str:
    roomcraft.choose_photo(image)
    roomcraft.select("room_type", "living_room")
    roomcraft.select("style", "scandinavian")
    roomcraft.generate()
    return roomcraft.wait_for_result()


def test_a_pro_user_past_the_fair_use_mark_still_gets_a_result_and_sees_the_note(
    app: Flask, roomcraft: Roomcraft, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PRO_FAIR_USE_DAILY_GENERATIONS", 1)
    email = roomcraft.sign_up()
    make_pro(app, email)
    try:
        roomcraft.go_to_feature("interior")
        assert not roomcraft.driver.find_elements(By.CSS_SELECTOR, NOTE)
        assert "Done!" in generate_interior(roomcraft, images["room"])

        roomcraft.go_to_feature("interior")
        note = roomcraft.find(NOTE)
        assert "1 design today" in note.text and "Nothing is limited" in note.text
        roomcraft.screenshots("fair-use-feature-note")
        violations, report = roomcraft.axe_violations()
        assert not violations, report
        assert "Done!" in generate_interior(roomcraft, images["room"])
        rows = generations_of(app, email)
        assert [row.queue for row in rows] == [GENERATION_QUEUE, GENERATION_FAIR_USE_QUEUE]
        assert [row.status for row in rows] == ["succeeded", "succeeded"]

        # A design that waits on the fair-use queue says why (a row no worker will take).
        with app.app_context():
            waiting = Generation(
                user_id=rows[0].user_id,
                generation_id="e2e-waiting",
                feature="interior",
                options={},
                status="queued",
                input_path=rows[0].input_path,
                queue=GENERATION_FAIR_USE_QUEUE,
            )
            db.session.add(waiting)
            db.session.commit()
            waiting_id = waiting.id
            db.session.remove()
        roomcraft.open(f"/dashboard/generations/{waiting_id}")
        roomcraft.wait().until(ec.visibility_of_element_located((By.CSS_SELECTOR, NOTE)))
        assert "waits for a quiet moment" in roomcraft.find(NOTE).text
        roomcraft.screenshots("fair-use-progress-note")
        violations, report = roomcraft.axe_violations()
        assert not violations, report
    finally:
        remove_subscriptions(app, email)


@pytest.fixture
def quiet_creem(app: Flask, live_server: str, creem_port: int) -> Iterator[CreemStandIn]:
    """The Creem stand-in on the port the worker reads, delivering no webhooks (so drift can
    be planted), and the app pointed at it."""
    stand_in = CreemStandIn(
        app.config["CREEM_API_KEY"], app.config["CREEM_WEBHOOK_SECRET"], deliver=False
    )
    with (
        serve_stand_in(create_stand_in_app(stand_in), port=creem_port) as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setitem(app.config, "CREEM_API_URL", url)
        patch.delitem(app.extensions, "creem_client", raising=False)
        yield stand_in


def customer_with_drift(
    app: Flask, creem: CreemStandIn, fair_use_generations: int = 0
) -> tuple[str, str]:
    """A Pro customer whose webhooks were applied, then Creem changed without telling us;
    returns the email and the Creem subscription id."""
    email = f"e2e-customer-{uuid.uuid4().hex[:8]}@{CONCURRENCY_DOMAIN}"
    with app.app_context():
        user = accounts.register_user(email, PASSWORD, verified=True)
        db.session.commit()
        subscription, events = subscribe(creem, user, app=app)
        apply_events(events)
        for index in range(3 + fair_use_generations):
            db.session.add(
                Generation(
                    user_id=user.id,
                    generation_id=f"e2e-{index}",
                    feature="interior",
                    input_path=f"{user.id}/e2e/input.png",
                    status="succeeded",
                    queue=GENERATION_QUEUE if index < 3 else GENERATION_FAIR_USE_QUEUE,
                )
            )
        db.session.commit()
        db.session.remove()
    return email, subscription.id


def test_admins_see_fair_use_the_reconciliation_report_and_the_exports(
    app: Flask, roomcraft: Roomcraft, quiet_creem: CreemStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PRO_FAIR_USE_DAILY_GENERATIONS", 3)
    heavy, heavy_sub = customer_with_drift(app, quiet_creem, fair_use_generations=2)
    gone, gone_sub = customer_with_drift(app, quiet_creem)
    quiet_creem.act(heavy_sub, "cancel-scheduled")  # its webhook is never sent
    with quiet_creem.lock:
        del quiet_creem.subscriptions[gone_sub]
    admin_email = f"e2e-admin-{uuid.uuid4().hex[:8]}@{CONCURRENCY_DOMAIN}"
    with app.app_context():
        accounts.register_user(admin_email, PASSWORD, role=UserRole.ADMIN, verified=True)
        db.session.commit()
        db.session.remove()
    roomcraft.open("/login")
    roomcraft.fill("#email", admin_email)
    roomcraft.fill("#password", PASSWORD)
    roomcraft.submit()
    roomcraft.wait().until(ec.url_matches(r"/dashboard$"))
    try:
        roomcraft.open("/admin/fair-use")
        table = roomcraft.find("#fair-use-table").text
        assert heavy in table and "past the mark" in table
        roomcraft.screenshots("admin-fair-use", fits=False)
        violations, report = roomcraft.axe_violations()
        assert not violations, report
        roomcraft.find("#fair-use-table a[href^='/admin/users/']").click()
        roomcraft.wait().until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), heavy))
        usage = roomcraft.find("#fair-use-heading").find_element(By.XPATH, "..").text
        assert "past the mark" in usage and "5" in usage
        screenshots_of_section(roomcraft, "admin-user-fair-use", "#fair-use-heading", fits=False)

        roomcraft.open("/admin/reconciliation")
        roomcraft.submit("form[action$='/reconciliation/run']")
        roomcraft.wait_for_flash("queued")
        roomcraft.wait(60).until(
            lambda _: _run_with_findings(app), "no reconciliation run reported the planted drift"
        )
        roomcraft.open("/admin/reconciliation")
        findings = roomcraft.find("#reconciliation-findings").text
        assert heavy_sub in findings and gone_sub in findings
        assert "fixed" in findings and "needs a person" in findings
        roomcraft.screenshots("admin-reconciliation", fits=False)
        violations, report = roomcraft.axe_violations()
        assert not violations, report
        with app.app_context():
            status = db.session.execute(
                select(Subscription.status).where(Subscription.creem_subscription_id == heavy_sub)
            ).scalar_one()
            db.session.remove()
        assert status == "scheduled_cancel"

        roomcraft.open("/settings/account")
        links = roomcraft.find("#data-export").text
        assert "Everything (JSON)" in links and "Credit history (CSV)" in links
        screenshots_of_section(roomcraft, "account-data-export", "#data-export")
    finally:
        with app.app_context():
            db.session.execute(delete(ReconciliationRun))
            for email in (heavy, gone):
                remove_subscriptions_of(email)
            db.session.commit()
            db.session.remove()


def remove_subscriptions_of(email: str) -> None:
    user_id = db.session.execute(select(User.id).where(User.email == email)).scalar_one()
    ids = select(Subscription.creem_subscription_id).where(Subscription.user_id == user_id)
    db.session.execute(delete(WebhookEvent).where(WebhookEvent.creem_subscription_id.in_(ids)))
    db.session.execute(delete(Subscription).where(Subscription.user_id == user_id))


def _run_with_findings(app: Flask) -> bool:
    with app.app_context():
        found = (
            db.session.execute(
                select(ReconciliationFinding.id)
                .join(ReconciliationRun)
                .where(ReconciliationRun.status == "finished")
            ).first()
            is not None
        )
        db.session.remove()
    return found


def screenshots_of_section(roomcraft: Roomcraft, name: str, css: str, fits: bool = True) -> None:
    """Like Roomcraft.screenshots, but scrolled so that the section `css` is in view (with
    `fits`, the page must not be wider than the screen)."""
    for width, height in ((1440, 900), (390, 844)):
        roomcraft.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        roomcraft.wait().until(
            lambda _: roomcraft.script(TRANSITIONS_DONE), "the page kept moving after the resize"
        )
        assert not fits or roomcraft.script("return document.documentElement.scrollWidth;") <= width
        roomcraft.script(
            "const top = document.querySelector(arguments[0])"
            ".getBoundingClientRect().top + window.scrollY;"
            "window.scrollTo(0, Math.max(top - 120, 0));",
            css,
        )
        path = roomcraft.screenshot_dir / f"{name}-{width}.png"
        assert roomcraft.driver.save_screenshot(str(path))
    roomcraft.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
