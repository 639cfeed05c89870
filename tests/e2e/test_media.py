"""Images in a real browser: the landing page's before/after examples, the comparison slider
on a result, and WebP thumbnails (not the originals) on the dashboard; axe on each state."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.keys import Keys

from tests.e2e.pages import Roomcraft

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]

_IMAGES = """
return [...document.querySelectorAll(arguments[0])].map(function (img) {
  return {src: img.currentSrc, loaded: img.complete && img.naturalWidth > 0,
          width: img.naturalWidth};
});
"""
_DECODED = """
const done = arguments[arguments.length - 1];
Promise.all([...document.querySelectorAll(arguments[0])].map(function (img) {
  return img.decode().catch(function () {});
})).then(function () { requestAnimationFrame(function () { done(true); }); });
"""
_REVEALED = """
return getComputedStyle(document.querySelector(arguments[0])).getPropertyValue("--compare").trim();
"""


def loaded_images(roomcraft: Roomcraft, css: str) -> list[dict]:
    roomcraft.wait().until(
        lambda _: all(image["loaded"] for image in roomcraft.script(_IMAGES, css)),
        f"{css} did not load",
    )
    roomcraft.driver.execute_async_script(_DECODED, css)
    return roomcraft.script(_IMAGES, css)


def section_screenshot(roomcraft: Roomcraft, css: str, name: str, width: int) -> None:
    """The viewport at `width` px with the element `css` scrolled to the top, as <name>.png."""
    roomcraft.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": 900 if width > 600 else 844,
            "deviceScaleFactor": 1,
            "mobile": False,
        },
    )
    roomcraft.script(
        "document.activeElement.blur(); document.querySelector(arguments[0]).scrollIntoView();", css
    )
    loaded_images(roomcraft, f"{css} img")
    roomcraft.assert_accessible()
    assert roomcraft.driver.save_screenshot(str(roomcraft.screenshot_dir / f"{name}.png"))
    roomcraft.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_landing_page_shows_real_examples_pricing_and_faq(roomcraft: Roomcraft) -> None:
    roomcraft.open("/")
    hero = loaded_images(roomcraft, ".landing-hero img")
    assert len(hero) == 2 and all(image["src"].endswith("w.webp") for image in hero)
    assert roomcraft.find("#pricing").is_displayed() and roomcraft.find("#faq").is_displayed()
    roomcraft.screenshots("landing")
    slider = roomcraft.find(".landing-hero [data-compare-range]")
    slider.send_keys(Keys.END)
    assert roomcraft.script(_REVEALED, ".landing-hero [data-compare]") == "100%"
    slider.send_keys(Keys.HOME)
    assert roomcraft.script(_REVEALED, ".landing-hero [data-compare]") == "0%"
    roomcraft.assert_accessible()
    for width in (1440, 390):
        section_screenshot(roomcraft, "#examples", f"landing-examples-{width}", width)
        section_screenshot(roomcraft, "#pricing", f"landing-pricing-{width}", width)
    roomcraft.script("document.querySelector('#faq details').open = true;")
    for width in (1440, 390):
        section_screenshot(roomcraft, "#faq", f"landing-faq-{width}", width)


def test_a_result_compares_before_and_after_and_thumbnails_are_webp(
    roomcraft: Roomcraft, images: dict[str, Path]
) -> None:
    roomcraft.sign_up()
    roomcraft.go_to_feature("interior")
    roomcraft.choose_photo(images["room"])
    roomcraft.generate()
    roomcraft.wait_for_result()
    pair = loaded_images(roomcraft, "#generation-result .compare-slider img")
    assert len(pair) == 2 and all(image["src"].endswith("w.webp") for image in pair), pair
    slider = roomcraft.find("#generation-result [data-compare-range]")
    slider.send_keys(Keys.ARROW_RIGHT)
    assert roomcraft.script(_REVEALED, "#generation-result [data-compare]") == "51%"
    downloads = roomcraft.driver.find_elements(
        "css selector", "#generation-result figcaption a[download]"
    )
    assert [link.get_attribute("href").rsplit("/", 1)[1] for link in downloads] == [
        "output",
        "input",
    ]
    roomcraft.script("document.activeElement.blur();")
    roomcraft.screenshots("result-compare")
    for width in (1440, 390):
        section_screenshot(roomcraft, "#generation-result", f"result-compare-slider-{width}", width)

    roomcraft.open("/dashboard")
    thumbnails = loaded_images(roomcraft, ".gallery img")
    assert thumbnails and all(image["src"].endswith("/output/320w.webp") for image in thumbnails), (
        thumbnails
    )
    roomcraft.screenshots("dashboard-thumbnails")
    for width in (1440, 390):
        section_screenshot(roomcraft, "#recent-heading", f"dashboard-recent-designs-{width}", width)
