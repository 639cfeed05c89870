"""Accounts in a real browser, with mail through the suite's SMTP server: verify before the
first generation, forgot password, change email, admin sign-in with TOTP; axe on each page."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from credit_app.models import UserRole
from credit_app.platform.extensions import db
from credit_app.services import accounts
from credit_app.testing import serve_in_thread
from credit_app.testing.mail_stand_in import create_page_app
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD
from tests.e2e.conftest import make_driver
from tests.e2e.pages import Roomcraft

pytestmark = [pytest.mark.e2e, pytest.mark.concurrency]
NEW_PASSWORD = "an entirely new passphrase"


def assert_accessible(roomcraft: Roomcraft) -> None:
    violations, report = roomcraft.axe_violations()
    assert not violations, report


def test_sign_up_then_verify_before_the_first_generation(
    roomcraft: Roomcraft, images: dict[str, Path]
) -> None:
    email = roomcraft.sign_up(verify=False)
    roomcraft.wait_for_counter("6/6")
    assert "Confirm your email to start generating" in roomcraft.find("#verify-notice").text

    roomcraft.go_to_feature("interior")
    roomcraft.choose_photo(images["room"])
    roomcraft.generate()
    dialog = roomcraft.wait_for_dialog()
    assert "Confirm your email to start generating" in dialog.text
    assert email in dialog.text and "your 6 credits are waiting" in dialog.text
    assert roomcraft.counter() == "6/6", "no credit is held while the address is unconfirmed"
    assert roomcraft.focus_in_dialog()
    assert_accessible(roomcraft)
    roomcraft.screenshots("verify-dialog")

    dialog.find_element(By.XPATH, ".//button[contains(., 'Resend the email')]").click()
    roomcraft.wait().until(lambda _: "We sent a new link" in roomcraft.find("#verify-status").text)
    roomcraft.follow_mailed_link(email, "Confirm your email", "/verify-email/", count=2)
    roomcraft.wait().until(ec.url_matches(r"/dashboard$"))
    assert "Your email address is confirmed" in roomcraft.flash_text()
    assert not roomcraft.driver.find_elements(By.CSS_SELECTOR, "#verify-notice")

    roomcraft.go_to_feature("interior")
    roomcraft.choose_photo(images["room"])
    roomcraft.generate()
    assert "Done! Redecorate a room finished" in roomcraft.wait_for_result()
    roomcraft.wait_for_counter("5/6")

    with serve_in_thread(create_page_app(roomcraft.mailbox), name="mail-page") as mail_page:
        roomcraft.driver.get(mail_page)
        assert email in roomcraft.find("table").text
        roomcraft.screenshots("local-mail-page")
        roomcraft.find("table a").click()
        assert "/verify-email/" in roomcraft.find("main ul").text
        roomcraft.screenshots("local-mail-message")


def test_forgot_password_then_reset_ends_the_old_session(
    roomcraft: Roomcraft, live_server: str, screenshot_dir: Path, tmp_path: Path
) -> None:
    email = roomcraft.sign_up()
    other = Roomcraft(
        make_driver(tmp_path / "second-profile"), live_server, screenshot_dir, roomcraft.mailbox
    )
    try:
        other.open("/login")
        other.find("a[href='/forgot-password']").click()
        other.wait().until(ec.url_matches(r"/forgot-password$"))
        assert_accessible(other)
        other.screenshots("forgot-password")
        other.fill("#email", email)
        other.submit()
        other.wait().until(
            ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Check your email")
        )
        assert email in other.find("main").text
        other.screenshots("forgot-password-sent")

        other.follow_mailed_link(email, "Reset your", "/reset-password/")
        assert_accessible(other)
        other.screenshots("reset-password")
        other.fill("#password", NEW_PASSWORD)
        other.fill("#confirm", NEW_PASSWORD)
        other.submit()
        other.wait().until(ec.url_matches(r"/login$"))
        assert "every session of your account has ended" in other.flash_text()

        roomcraft.open("/dashboard")
        roomcraft.wait().until(ec.url_contains("/login"))
        assert "Sign in" in roomcraft.find("h1").text, "the old session still works"

        other.fill("#email", email)
        other.fill("#password", NEW_PASSWORD)
        other.submit()
        other.wait().until(ec.url_matches(r"/dashboard$"))
    finally:
        other.driver.quit()


def test_change_email_after_confirming_the_new_address(roomcraft: Roomcraft) -> None:
    email = roomcraft.sign_up()
    new_email = f"e2e-moved-{uuid.uuid4().hex[:8]}@{CONCURRENCY_DOMAIN}"
    roomcraft.find("#sidebar a[href='/settings/account']").click()
    roomcraft.wait().until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Account"))
    assert_accessible(roomcraft)
    roomcraft.screenshots("account-settings")
    roomcraft.fill("#em-new_email", new_email)
    roomcraft.fill("#em-password", PASSWORD)
    roomcraft.submit("form[action='/settings/email']")
    roomcraft.wait_for_flash("We sent a link to")
    assert f"it stays {email}" in roomcraft.flash_text()
    assert new_email in roomcraft.find("#email-heading + p + .notice").text

    roomcraft.follow_mailed_link(new_email, "new email", "/verify-email/")
    roomcraft.wait().until(ec.url_matches(r"/settings/account$"))
    assert f"Your email address is now {new_email}" in roomcraft.flash_text()
    assert new_email in roomcraft.find(".profile-email").text


@pytest.fixture
def admin_email(app: Flask) -> str:
    email = f"e2e-admin-{uuid.uuid4().hex[:8]}@{CONCURRENCY_DOMAIN}"
    with app.app_context():
        accounts.register_user(email, PASSWORD, role=UserRole.ADMIN, verified=True)
        db.session.commit()
        db.session.remove()
    return email


def sign_in(roomcraft: Roomcraft, email: str) -> None:
    roomcraft.open("/login")
    roomcraft.fill("#email", email)
    roomcraft.fill("#password", PASSWORD)
    roomcraft.submit()


def test_admin_sign_in_with_totp_and_a_recovery_code(
    roomcraft: Roomcraft, app: Flask, admin_email: str, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "ADMIN_TWO_FACTOR_REQUIRED", True)
    sign_in(roomcraft, admin_email)
    roomcraft.wait().until(ec.url_contains("/login/two-factor/setup"))
    assert_accessible(roomcraft)
    roomcraft.screenshots("two-factor-setup")
    secret = roomcraft.find("code.secret").text
    roomcraft.fill("#code", pyotp.TOTP(secret).now())
    roomcraft.submit()
    roomcraft.wait().until(
        ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Two-factor sign-in is on")
    )
    codes = [
        item.text
        for item in roomcraft.driver.find_elements(By.CSS_SELECTOR, ".recovery-codes code")
    ]
    assert len(codes) == 10
    assert_accessible(roomcraft)
    roomcraft.screenshots("two-factor-recovery-codes")
    roomcraft.find("main a.button-primary").click()
    roomcraft.open("/admin/")
    assert "Admin" in roomcraft.driver.title

    roomcraft.find("button.sign-out").click()
    roomcraft.wait().until(ec.url_matches(r"/login$"))
    sign_in(roomcraft, admin_email)
    roomcraft.wait().until(ec.url_contains("/login/two-factor"))
    assert_accessible(roomcraft)
    roomcraft.screenshots("two-factor-code")
    roomcraft.fill("#code", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    roomcraft.submit()
    roomcraft.wait().until(
        lambda _: roomcraft.driver.find_elements(By.CSS_SELECTOR, ".field-error")
    )
    assert "not right" in roomcraft.find(".field-error").text
    roomcraft.fill("#code", codes[0])
    roomcraft.submit()
    roomcraft.wait().until(ec.url_matches(r"/dashboard$"))
    assert "recovery code" in roomcraft.flash_text()

    roomcraft.open("/admin/?q=" + admin_email)
    roomcraft.find("a[href^='/admin/users/']").click()
    roomcraft.wait().until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), admin_email))
    facts = roomcraft.find("dl.facts").text
    assert "verified" in facts and "two-factor on" in facts
    audit = roomcraft.find("#user-audit-heading").find_element(By.XPATH, "..").text
    assert "staff.sign_in_failed" in audit and "staff.sign_in" in audit

    waiting = f"e2e-waiting-{uuid.uuid4().hex[:8]}@{CONCURRENCY_DOMAIN}"
    with app.app_context():
        accounts.register_user(waiting, PASSWORD)
        db.session.commit()
        db.session.remove()
    roomcraft.open("/admin/?q=" + waiting)
    roomcraft.find("a[href^='/admin/users/']").click()
    roomcraft.wait().until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), waiting))
    assert "not verified" in roomcraft.find("dl.facts").text
    assert roomcraft.find("#access-heading").text == "Disable sign-in"
    roomcraft.screenshots("admin-user-verification", fits=False)

    # Admin pages at 390 px: wide tables scroll inside their own region, never the page.
    for path, name in (
        ("/admin/", "admin-users"),
        ("/admin/jobs", "admin-jobs"),
        ("/admin/analytics", "admin-analytics"),
        ("/admin/audit", "admin-audit"),
    ):
        roomcraft.open(path)
        roomcraft.screenshots(name)
