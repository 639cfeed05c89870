"""A free user at zero credits buys a credit pack from the upgrade modal in a real browser,
pays on the Creem stand-in's checkout page, comes back to the feature, sees the credits
arrive once the webhook (delivered by the stand-in to the live server, applied by the real
rq worker) granted them, and generates with them. Also: what expires when, in the sidebar
and the history, and the packs on the subscription page (screenshots at 1440 and 390 px).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from credit_app.platform.extensions import db
from credit_app.services import accounts, credits
from tests.e2e.pages import _TRANSITIONS_DONE, Roomcraft
from tests.e2e.test_upgrade_flow import (
    FEATURE,
    WEBHOOK_TIMEOUT,
    Creem,
    creem,  # noqa: F401 (the fixture)
    generate_once,
    run_out_of_credits,
    succeeded_generations,
)

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]


def test_a_free_user_at_zero_buys_a_pack_and_keeps_generating(
    roomcraft: Roomcraft,
    creem: Creem,  # noqa: F811
    images: dict[str, Path],
) -> None:
    photo = images["room"]
    _, user_id, dialog = run_out_of_credits(roomcraft, photo)
    assert "Or top up and keep going on the free plan" in dialog.text
    roomcraft.screenshots("upgrade-modal-with-packs")
    dialog.find_element(By.CSS_SELECTOR, '[data-buy-pack="pack_20"]').click()

    roomcraft.wait().until(
        lambda _: roomcraft.driver.current_url.startswith(f"{creem.url}/checkout/"),
        "the pack did not lead to the stand-in's checkout",
    )
    assert roomcraft.find("h1").text == "Buy 20 credits"
    (checkout,) = creem.stand_in.checkouts.values()
    assert checkout.metadata == {"user_id": str(user_id), "pack": "pack_20", "feature": FEATURE.key}
    roomcraft.screenshots("pack-checkout-page")

    creem.stand_in.hold()
    roomcraft.find("button.pay").click()
    roomcraft.wait().until(
        lambda _: roomcraft.path == f"/dashboard/{FEATURE.slug}",
        "Pay did not lead back to the feature",
    )
    confirmation = roomcraft.find("#checkout-confirmation")
    assert confirmation.get_attribute("data-state") == "confirming"
    assert roomcraft.counter() == "0/6", "credits before the webhook arrived"
    roomcraft.screenshots("pack-confirming")

    released = creem.stand_in.release()
    assert [event.event_type for event in released] == ["checkout.completed"]
    roomcraft.wait(WEBHOOK_TIMEOUT).until(
        lambda _: (
            roomcraft.find("#checkout-confirmation").get_attribute("data-state") == "pack_granted"
        ),
        "the page never said the credits arrived",
    )
    assert "Your credits are here!" in roomcraft.find("#checkout-confirmation").text
    roomcraft.wait_for_counter("20/26")
    roomcraft.screenshots("pack-granted")

    assert f"Done! {FEATURE.title} finished" in generate_once(roomcraft, photo)
    assert succeeded_generations(user_id) == 1
    roomcraft.wait_for_counter("19/26")
    assert credits.get_user_credits(user_id).remaining == 19
    roomcraft.driver.refresh()
    assert "checkout-confirmation" not in roomcraft.driver.page_source, "said twice"


def test_the_sidebar_and_history_say_what_expires_when(roomcraft: Roomcraft) -> None:
    email = roomcraft.sign_up()
    roomcraft.wait_for_counter("6/6")
    user = accounts.find_user_by_email(email)
    expires_at = credits.utcnow() + timedelta(days=14)
    credits.grant_credits(user.id, 3, "Spring promotion", expires_at=expires_at)
    db.session.commit()
    roomcraft.open("/dashboard")
    roomcraft.wait_for_counter("9/9")
    note = f"3 credits expire on {expires_at:%d %b %Y}"
    roomcraft.wait().until(
        lambda _: (
            roomcraft.script(
                'const n = document.querySelector("#sidebar-credits [data-credit-expiry]");'
                "return n ? n.innerText.trim() : null;"
            )
            == note
        ),
        "the sidebar does not say it",
    )
    assert note in roomcraft.script(
        'return document.getElementById("history-heading").parentElement.innerText;'
    )
    scrolled_screenshots(roomcraft, "#history-heading", "credits-expiring")
    roomcraft.open("/dashboard/subscription")
    packs = roomcraft.find("#packs")
    assert "Buy 20 credits" in packs.text and "Buy 60 credits" in packs.text
    assert note in packs.text
    scrolled_screenshots(roomcraft, "#packs", "subscription-packs")


def scrolled_screenshots(roomcraft: Roomcraft, css: str, name: str) -> None:
    """Like Roomcraft.screenshots, but with `css` scrolled into view (below the fold)."""
    for width, height in ((1440, 900), (390, 844)):
        roomcraft.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        roomcraft.wait().until(
            lambda _: roomcraft.script(_TRANSITIONS_DONE), "the page kept moving after the resize"
        )
        assert roomcraft.script("return document.documentElement.scrollWidth;") <= width
        roomcraft.script(f"document.querySelector({css!r}).scrollIntoView();")
        path = roomcraft.screenshot_dir / f"{name}-{width}.png"
        assert roomcraft.driver.save_screenshot(str(path)), f"could not save {path}"
    roomcraft.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
