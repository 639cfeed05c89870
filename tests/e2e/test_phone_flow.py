"""Issue 14 part A in a real browser at 390 x 844: the generation flow on a phone, the upgrade
with the photo kept through the paywall and the payment, uploads checked in the browser, and
one live truth across two windows (spend in one, pay in one: every credit and plan text of
the other follows)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from credit_app.generation.features import FEATURES
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits
from tests.conftest import PASSWORD
from tests.e2e.conftest import make_driver
from tests.e2e.pages import Roomcraft
from tests.e2e.test_live_updates import REFUSED_SOCKET
from tests.e2e.test_upgrade_flow import (  # noqa: F401 (the creem fixture)
    WEBHOOK_TIMEOUT,
    Creem,
    applied_events,
    creem,
    spend_all_credits,
)

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
FEATURE = FEATURES["interior"]

_IN_VIEW = """
const box = arguments[0].getBoundingClientRect();
return box.top >= 0 && box.top < window.innerHeight && box.bottom > 0;
"""
_FILE_NAMES = 'return [...document.querySelector("#image").files].map(f => f.name);'


def as_phone(roomcraft: Roomcraft) -> None:
    """The phone's screen again, once the sidebar has slid away from a wider layout."""
    roomcraft.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    roomcraft.wait_for_layout()


@pytest.fixture
def phone(
    live_server: str, tmp_path: Path, screenshot_dir: Path, smtp_server
) -> Iterator[Roomcraft]:
    """A browser the size of a phone (390 x 844)."""
    driver = make_driver(tmp_path / "phone-profile", size=(PHONE["width"], PHONE["height"]))
    try:
        on_phone = Roomcraft(driver, live_server, screenshot_dir, smtp_server[0])
        as_phone(on_phone)
        yield on_phone
    finally:
        driver.quit()


@pytest.fixture
def second_phone(
    live_server: str, tmp_path: Path, screenshot_dir: Path, smtp_server
) -> Iterator[Roomcraft]:
    """A second window (its own browser profile) for the same user."""
    driver = make_driver(tmp_path / "second-profile", size=(PHONE["width"], PHONE["height"]))
    try:
        other = Roomcraft(driver, live_server, screenshot_dir, smtp_server[0])
        as_phone(other)
        yield other
    finally:
        driver.quit()


def sign_in(roomcraft: Roomcraft, email: str) -> None:
    roomcraft.open("/login")
    roomcraft.fill("#email", email)
    roomcraft.fill("#password", PASSWORD)
    roomcraft.submit()
    roomcraft.wait().until(ec.url_matches(r"/dashboard$"))


def counter_unlimited(roomcraft: Roomcraft) -> bool:
    """Whether the counter (in the closed drawer on a phone, so read as text content) says
    Pro's "Unlimited"."""
    return bool(
        roomcraft.script(
            'const c = document.getElementById("sidebar-credits");'
            'return c.dataset.unlimited === "true" &&'
            ' c.querySelector(".credits-count strong").textContent.trim() === "Unlimited";'
        )
    )


def topbar_credits(roomcraft: Roomcraft) -> str:
    """What the phone's top bar shows: "5/6", or "Pro"."""
    return roomcraft.find(".topbar-credits strong").text.strip()


def in_view(roomcraft: Roomcraft, css: str) -> bool:
    found = roomcraft.driver.find_elements(By.CSS_SELECTOR, css)
    return bool(found) and bool(roomcraft.script(_IN_VIEW, found[0]))


def focused_matches(roomcraft: Roomcraft, css: str) -> bool:
    return bool(roomcraft.script("return document.activeElement.matches(arguments[0]);", css))


def viewport_shot(roomcraft: Roomcraft, name: str) -> Path:
    """The phone's viewport as it is now (not scrolled to the top)."""
    path = roomcraft.screenshot_dir / f"{name}.png"
    assert roomcraft.driver.save_screenshot(str(path)), f"could not save {path}"
    return path


def start_generation(roomcraft: Roomcraft, photo: Path) -> None:
    """Choose the photo and press Generate; waits for an earlier result to be replaced."""
    previous = roomcraft.driver.find_elements(By.CSS_SELECTOR, "#generation-result > *")
    roomcraft.choose_photo(photo)
    roomcraft.generate()
    if previous:
        roomcraft.wait().until(ec.staleness_of(previous[0]), "the result panel did not reset")


def test_on_a_phone_generate_shows_progress_then_the_result_and_the_count(
    phone: Roomcraft, images: dict[str, Path]
) -> None:
    phone.sign_up()
    phone.wait_for_live_counter()
    assert phone.find(".topbar-credits").is_displayed()
    assert topbar_credits(phone) == "6/6"
    assert in_view(phone, ".topbar-credits"), "the credit count is not on screen"
    phone.screenshots("phone-dashboard")
    as_phone(phone)

    phone.open(f"/dashboard/{FEATURE.slug}")
    phone.wait_for_live_counter()
    assert "Uses 1 credit · 6 left" in phone.find(".cost-note").text
    start_generation(phone, images["room"])
    phone.wait().until(
        lambda _: in_view(phone, "#generation-result .generation"),
        "the progress never came into view",
    )
    phone.wait().until(
        lambda _: focused_matches(phone, "#generation-result .generation"),
        "focus did not move to the progress",
    )
    phone.wait().until(
        lambda _: topbar_credits(phone) == "5/6", f"the top bar shows {topbar_credits(phone)!r}"
    )
    if phone.driver.find_elements(By.CSS_SELECTOR, "[data-generation-pending]"):
        viewport_shot(phone, "phone-progress-390")

    text = phone.wait_for_result()
    assert f"Done! {FEATURE.title} finished" in text
    phone.wait().until(
        lambda _: in_view(phone, "#generation-result .generation-succeeded"),
        "the result is not on screen",
    )
    phone.wait().until(
        lambda _: focused_matches(phone, "#generation-result .generation-succeeded"),
        "focus did not move to the result",
    )
    assert "live-down" not in phone.find("body").get_attribute("class")
    assert topbar_credits(phone) == "5/6" and phone.counter() == "5/6"
    assert "Uses 1 credit · 5 left" in phone.find(".cost-note").text
    viewport_shot(phone, "phone-result-390")

    phone.open("/dashboard")
    rows = phone.driver.find_elements(By.CSS_SELECTOR, ".history-table tbody tr")
    assert [row.get_attribute("data-outcome") for row in rows] == ["done", "other"]
    assert "You have 5 of 6 credits" in phone.find(".page-head").text
    phone.screenshots("phone-history")
    as_phone(phone)
    assert phone.script("return document.documentElement.scrollWidth;") <= PHONE["width"]
    phone.script('document.getElementById("history-heading").scrollIntoView();')
    viewport_shot(phone, "phone-history-rows-390")

    phone.open("/dashboard/furnish-empty-space")
    phone.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    label = phone.find('#sidebar a[aria-current="page"] .label')
    assert label.text == "Furnish an empty space"
    assert phone.script("return arguments[0].scrollWidth <= arguments[0].clientWidth;", label), (
        "the active sidebar item is cut off"
    )
    phone.screenshot("sidebar-active-long-name-1440")


def test_without_the_socket_the_result_still_arrives_by_polling(
    phone: Roomcraft, images: dict[str, Path]
) -> None:
    phone.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": REFUSED_SOCKET}
    )
    phone.sign_up()
    phone.open(f"/dashboard/{FEATURE.slug}")
    assert "live-down" in phone.find("body").get_attribute("class")
    start_generation(phone, images["room"])
    assert f"Done! {FEATURE.title} finished" in phone.wait_for_result()
    phone.wait().until(lambda _: topbar_credits(phone) == "5/6")


def test_uploads_are_checked_in_the_browser_and_the_photo_survives_a_refusal(
    phone: Roomcraft, images: dict[str, Path], tmp_path: Path
) -> None:
    phone.sign_up()
    phone.open("/dashboard/remove-object")
    assert not phone.find("#image-preview").is_displayed(), "an empty preview is shown"
    assert not phone.find("#image-error").is_displayed()
    phone.screenshots("remove-object-empty")
    as_phone(phone)

    too_big = tmp_path / "huge-photo.png"
    too_big.write_bytes(images["room"].read_bytes() + b"\0" * (11 * 1024 * 1024))
    phone.find("#image").send_keys(str(too_big))
    error = phone.find("#image-error")
    phone.wait().until(lambda _: error.is_displayed(), "no message for a too large file")
    assert "huge-photo.png" in error.text and "up to 10 MB" in error.text
    assert phone.script(_FILE_NAMES) == [], "the too large file would still be sent"
    assert phone.find("#image").get_attribute("aria-invalid") == "true"
    phone.screenshots("upload-too-large")
    as_phone(phone)

    not_a_photo = tmp_path / "notes.gif"
    not_a_photo.write_bytes(b"GIF89a" + b"\0" * 64)
    phone.find("#image").send_keys(str(not_a_photo))
    phone.wait().until(lambda _: "not a JPEG, PNG or WebP" in error.text)

    phone.open(f"/dashboard/{FEATURE.slug}")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (16, 16), (200, 100, 50)).save(tiny)
    phone.choose_photo(tiny)
    phone.generate()
    phone.wait().until(
        lambda _: "too small" in phone.find("#image-error").text,
        "the server's refusal is not under the field",
    )
    assert phone.find("#image-error").is_displayed()
    phone.wait().until(
        lambda _: phone.script(_FILE_NAMES) == ["tiny.png"],
        "the chosen photo was lost after the refusal",
    )
    assert phone.find("#image-preview").is_displayed()
    phone.wait_for_counter("6/6")
    phone.screenshots("upload-refused-photo-kept")


def test_the_photo_chosen_before_the_paywall_is_there_after_paying(
    phone: Roomcraft,
    creem: Creem,  # noqa: F811
    images: dict[str, Path],
) -> None:
    email = phone.sign_up()
    spend_all_credits(email)
    phone.open(f"/dashboard/{FEATURE.slug}")
    assert "Uses 1 credit" not in phone.find(".cost-note").text
    assert topbar_credits(phone) == "0/6"
    phone.choose_photo(images["room"])
    phone.generate()
    dialog = phone.wait_for_dialog()
    dialog.find_element(By.LINK_TEXT, "Upgrade Now").click()
    phone.wait().until(lambda _: phone.path == "/dashboard/subscription")
    cards = phone.driver.find_elements(By.CSS_SELECTOR, "#plans .plan-card")
    assert [card.find_element(By.CSS_SELECTOR, "h3").text for card in cards] == [
        "Free",
        "Pro monthly",
        "Pro yearly",
    ]
    assert "Your plan" in cards[0].text and "Recommended" in cards[2].text
    assert "Save $38 (16%)" in cards[2].text
    phone.screenshots("pricing-cards")
    as_phone(phone)
    phone.find("#plans").find_element(
        By.XPATH, ".//button[normalize-space()='Choose Pro monthly']"
    ).click()
    phone.wait().until(lambda _: phone.driver.current_url.startswith(f"{creem.url}/checkout/"))
    phone.find("button.pay").click()
    phone.wait().until(lambda _: phone.path == f"/dashboard/{FEATURE.slug}")
    assert "You are back at Redecorate a room." in phone.find("main").text
    phone.wait().until(
        lambda _: phone.script(_FILE_NAMES) == ["room.png"],
        "the photo chosen before the paywall is gone",
    )
    assert "We kept the photo you chose before" in phone.find("#image-hint").text
    phone.wait(WEBHOOK_TIMEOUT).until(
        lambda _: len(creem.stand_in.events) >= 3 and applied_events(creem.stand_in),
        "the webhooks were not all applied",
    )
    phone.wait().until(
        lambda _: counter_unlimited(phone),
        "Pro never reached the page: " + phone.find("main").text[:500],
    )
    phone.wait().until(lambda _: phone.find(".cost-note").text == "Unlimited on Pro")
    assert topbar_credits(phone).startswith("Pro")
    phone.generate()
    assert f"Done! {FEATURE.title} finished" in phone.wait_for_result()


def test_two_windows_every_credit_and_plan_text_follows_the_other(
    phone: Roomcraft,
    second_phone: Roomcraft,
    creem: Creem,  # noqa: F811
    images: dict[str, Path],
) -> None:
    email = phone.sign_up()
    sign_in(second_phone, email)
    watcher = second_phone
    watcher.wait_for_live_counter()
    assert "You have 6 of 6 credits" in watcher.find(".page-head").text

    phone.open(f"/dashboard/{FEATURE.slug}")
    phone.wait_for_live_counter()
    start_generation(phone, images["room"])
    phone.wait_for_result()
    watcher.wait_for_counter("5/6")
    watcher.wait().until(
        lambda _: "You have 5 of 6 credits" in watcher.find(".page-head").text,
        f"the heading kept {watcher.find('.page-head').text!r}",
    )
    assert topbar_credits(watcher) == "5/6"

    watcher.open("/dashboard/redesign-exterior")
    watcher.wait_for_live_counter()
    assert watcher.find(".cost-note").text == "Uses 1 credit · 5 left"
    start_generation(phone, images["room"])
    phone.wait_for_result()
    watcher.wait().until(
        lambda _: watcher.find(".cost-note").text == "Uses 1 credit · 4 left",
        f"the cost note kept {watcher.find('.cost-note').text!r}",
    )
    assert topbar_credits(watcher) == "4/6" and watcher.counter() == "4/6"

    watcher.open("/dashboard/subscription")
    watcher.wait_for_live_counter()
    assert "Free: 4 of 6 credits left" in watcher.find("#current-plan").text
    phone.open("/dashboard/subscription")
    phone.find("#plans").find_element(
        By.XPATH, ".//button[normalize-space()='Choose Pro monthly']"
    ).click()
    phone.wait().until(lambda _: phone.driver.current_url.startswith(f"{creem.url}/checkout/"))
    phone.find("button.pay").click()
    phone.wait(WEBHOOK_TIMEOUT).until(
        lambda _: len(creem.stand_in.events) >= 3 and applied_events(creem.stand_in),
        "the webhooks were not all applied",
    )

    watcher.wait(WEBHOOK_TIMEOUT).until(
        lambda _: "Pro monthly" in watcher.find("#current-plan").text,
        f"the other window's plan still reads {watcher.find('#current-plan').text!r}",
    )
    plan_text = watcher.find("#current-plan").text
    assert "unlimited generations" in plan_text and "credits left" not in plan_text
    assert not watcher.driver.find_elements(
        By.XPATH, "//button[starts-with(normalize-space(), 'Choose Pro')]"
    ), "a Choose Pro button that would lead to a 409"
    current = watcher.find("#plans .plan-current")
    assert current.find_element(By.CSS_SELECTOR, "h3").text == "Pro monthly"
    assert "Your plan" in current.text
    assert counter_unlimited(watcher) and topbar_credits(watcher).startswith("Pro")
    user = accounts.find_user_by_email(email)
    assert credits.get_user_credits(user.id).unlimited
    db.session.rollback()
    watcher.screenshots("subscription-after-paying-elsewhere")
