"""The dashboard in a real browser: sign-up, the six features and the credit counter, the
upgrade modal, the collapsible sidebar, the mobile drawer, and axe-core's WCAG 2.1 AA check."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from credit_app.generation.features import FEATURES
from tests.e2e.pages import Roomcraft

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]

# Each feature once: which image to upload and what to choose in its form.
RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "interior": (
        "room",
        {"room_type": "living_room", "style": "scandinavian", "prompt": "warm light, oak floors"},
    ),
    "exterior": ("house", {"style": "mediterranean"}),
    "sketch": ("sketch", {"room_type": "bedroom", "style": "japandi"}),
    "furnish": ("empty_room", {"room_type": "dining_room", "style": "industrial"}),
    "remove": ("room", {}),
    "video": ("room", {"motion": "pan_left"}),
}
RESULT_SCREENSHOTS = ("interior", "remove", "video")
MOBILE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
_NAV_OVERFLOW = """
const sidebar = document.getElementById("sidebar");
const edge = sidebar.getBoundingClientRect().right
  - parseFloat(getComputedStyle(sidebar).paddingRight);
return [...sidebar.querySelectorAll(".nav-list a")]
  .filter(link => link.getBoundingClientRect().right > edge + 0.5).map(link => link.title);
"""


def fill_form(roomcraft: Roomcraft, choices: dict[str, str]) -> None:
    for name, value in choices.items():
        if name == "prompt":
            roomcraft.type_prompt(value)
        else:
            roomcraft.select(name, value)


def test_a_new_user_spends_six_credits_then_meets_the_upgrade_modal(
    roomcraft: Roomcraft, images: dict[str, Path]
) -> None:
    roomcraft.sign_up()
    roomcraft.wait_for_counter("6/6")
    assert roomcraft.counter_label() == "6 of 6 credits remaining"
    roomcraft.screenshots("dashboard-expanded")

    for used, (feature, (image, choices)) in enumerate(RUNS.items()):
        before, after = f"{6 - used}/6", f"{5 - used}/6"
        roomcraft.go_to_feature(feature)
        assert roomcraft.counter() == before
        preview = roomcraft.choose_photo(images[image])
        if feature == "remove":
            mask = roomcraft.draw_mask(preview)
            assert mask == pytest.approx({"x": 30, "y": 30, "w": 30, "h": 30}, abs=3)
            roomcraft.screenshots("feature-remove-object")
        fill_form(roomcraft, choices)
        roomcraft.generate()
        assert roomcraft.counter_at_send() == [after], "the counter did not drop before the request"
        assert f"Done! {FEATURES[feature].title} finished" in roomcraft.wait_for_result()
        roomcraft.wait_for_counter(after)
        assert roomcraft.find("#generation-result img.result-image").get_attribute("src")
        if feature in RESULT_SCREENSHOTS:
            roomcraft.screenshots(f"result-{feature}", show="#generation-result")
    assert roomcraft.counter_label() == "0 of 6 credits remaining"

    roomcraft.go_to_feature("video")
    roomcraft.choose_photo(images["room"])
    generate = roomcraft.generate()
    dialog = roomcraft.wait_for_dialog()
    assert "You've used all your free credits!" in dialog.text
    assert "Generate a video" in dialog.text
    assert roomcraft.focus_in_dialog()
    assert roomcraft.counter() == "0/6"
    roomcraft.screenshots("upgrade-modal")
    violations, report = roomcraft.axe_violations()
    assert not violations, report

    for _ in range(3):
        ActionChains(roomcraft.driver).send_keys(Keys.TAB).perform()
        assert roomcraft.focus_in_dialog(), "Tab left the modal"
    ActionChains(roomcraft.driver).send_keys(Keys.ESCAPE).perform()
    roomcraft.wait_for_no_dialog()
    assert roomcraft.active_element() == generate, "focus did not return after Esc"

    roomcraft.generate()
    dialog = roomcraft.wait_for_dialog()
    dialog.find_element(By.XPATH, ".//button[normalize-space()='Maybe Later']").click()
    roomcraft.wait_for_no_dialog()
    assert roomcraft.active_element() == generate, "focus did not return after Maybe Later"

    roomcraft.generate()
    dialog = roomcraft.wait_for_dialog()
    dialog.find_element(By.LINK_TEXT, "Upgrade Now").click()
    roomcraft.wait().until(lambda _: roomcraft.path == "/dashboard/subscription")
    assert roomcraft.query.get("feature") == ["video"]
    assert "You were about to use Generate a video" in roomcraft.find("main").text
    roomcraft.screenshots("subscription-from-modal")


def test_a_refused_generation_puts_the_true_count_back(
    roomcraft: Roomcraft, images: dict[str, Path]
) -> None:
    roomcraft.sign_up()
    roomcraft.go_to_feature("remove")
    roomcraft.choose_photo(images["room"])
    roomcraft.wait_for_live_counter()
    roomcraft.generate()
    assert roomcraft.counter_at_send() == ["5/6"]
    roomcraft.wait_for_counter("6/6", timeout=3)
    roomcraft.screenshots("feature-refused")


def test_the_collapsed_sidebar_keeps_the_counter_and_survives_a_reload(
    roomcraft: Roomcraft,
) -> None:
    roomcraft.sign_up()
    roomcraft.wait_for_counter("6/6")
    sidebar = roomcraft.find("#sidebar")
    wide = sidebar.size["width"]
    assert roomcraft.script(_NAV_OVERFLOW) == [], "nav links stick out of the sidebar"

    collapse(roomcraft)
    assert sidebar.size["width"] < wide / 2
    assert roomcraft.find("#sidebar-credits [data-credit-number]").is_displayed()
    assert roomcraft.counter() == "6/6"
    assert roomcraft.counter_label() == "6 of 6 credits remaining"
    assert not roomcraft.find("#sidebar-credits .credits-label").is_displayed()
    roomcraft.screenshots("dashboard-collapsed")

    roomcraft.driver.refresh()
    assert "sidebar-collapsed" in roomcraft.find("body").get_attribute("class")
    assert roomcraft.find("[data-sidebar-toggle]").get_attribute("aria-expanded") == "false"
    assert roomcraft.find("#sidebar").size["width"] < wide / 2
    assert roomcraft.counter() == "6/6"

    collapse(roomcraft, expected=False)
    roomcraft.driver.refresh()
    assert "sidebar-collapsed" not in roomcraft.find("body").get_attribute("class")
    assert roomcraft.find("#sidebar").size["width"] == wide


def collapse(roomcraft: Roomcraft, expected: bool = True) -> None:
    """Press the sidebar toggle and wait until the server has saved the preference."""
    roomcraft.script(
        'window.e2eSaved = null; document.addEventListener("htmx:afterRequest", '
        "function (e) { window.e2eSaved = e.detail.xhr.status; }, {once: true});"
    )
    toggle = roomcraft.find("[data-sidebar-toggle]")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == str(not expected).lower()
    roomcraft.wait().until(
        lambda _: roomcraft.script("return window.e2eSaved;") == 204,
        "the sidebar preference was not saved",
    )


def test_the_mobile_drawer_shows_the_counter(roomcraft: Roomcraft) -> None:
    roomcraft.sign_up()
    roomcraft.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", MOBILE)
    roomcraft.driver.refresh()
    sidebar_box = 'return document.getElementById("sidebar").getBoundingClientRect().toJSON();'
    menu = roomcraft.find("[data-drawer-toggle]")
    assert menu.is_displayed() and menu.get_attribute("aria-expanded") == "false"
    assert roomcraft.script(sidebar_box)["right"] <= 0, "the drawer is visible before opening"
    roomcraft.screenshot("mobile-dashboard")
    assert roomcraft.script("return document.documentElement.scrollWidth;") <= MOBILE["width"]
    for _ in range(6):
        ActionChains(roomcraft.driver).send_keys(Keys.TAB).perform()
        assert not in_sidebar(roomcraft), "Tab reached a link in the closed drawer"

    menu.click()
    assert menu.get_attribute("aria-expanded") == "true"
    roomcraft.wait().until(lambda _: roomcraft.script(sidebar_box)["left"] >= 0)
    count = roomcraft.find("#sidebar-credits [data-credit-number]")
    box = roomcraft.script("return arguments[0].getBoundingClientRect().toJSON();", count)
    assert count.is_displayed() and count.text == "6/6"
    assert box["left"] >= 0 and box["right"] <= MOBILE["width"]
    assert box["top"] >= 0 and box["bottom"] <= MOBILE["height"], "counter below the fold"
    assert roomcraft.active_element().get_attribute("href").endswith("/dashboard")
    roomcraft.screenshot("mobile-drawer")
    for _ in range(20):
        ActionChains(roomcraft.driver).send_keys(Keys.TAB).perform()
        assert in_sidebar(roomcraft), "Tab left the open drawer"
    ActionChains(roomcraft.driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(
        Keys.SHIFT
    ).perform()
    assert in_sidebar(roomcraft), "Shift+Tab left the open drawer"

    ActionChains(roomcraft.driver).send_keys(Keys.ESCAPE).perform()
    assert menu.get_attribute("aria-expanded") == "false"
    roomcraft.wait().until(lambda _: roomcraft.script(sidebar_box)["right"] <= 0)
    assert roomcraft.active_element() == menu, "focus did not return to the menu button"


def in_sidebar(roomcraft: Roomcraft) -> bool:
    return roomcraft.script(
        'return document.getElementById("sidebar").contains(document.activeElement);'
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_wcag_violations_on_the_dashboard_and_a_feature_page(
    roomcraft: Roomcraft, images: dict[str, Path], scheme: str
) -> None:
    roomcraft.driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    roomcraft.sign_up()
    violations, report = roomcraft.axe_violations()
    assert not violations, report
    if scheme == "dark":
        roomcraft.screenshots("dashboard-dark")
    roomcraft.go_to_feature("remove")
    roomcraft.draw_mask(roomcraft.choose_photo(images["room"]))
    violations, report = roomcraft.axe_violations()
    assert not violations, report
