"""Accounts in the app: verification before generating, password reset, settings, sessions
that can be ended, admin two-factor and disabling, rate limits, security headers."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from credit_app.models import AuditLogEntry, CreditReservation, CreditTransaction
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits, two_factor
from tests.blueprints.test_generations import start
from tests.conftest import PASSWORD
from tests.mail_support import empty_queue, link_path, run_jobs

NEW_PASSWORD = "a completely new passphrase"


@pytest.fixture(autouse=True)
def quiet_queue(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "GENERATION_STORAGE_PATH", tmp_path / "generations")
    empty_queue()


def sign_in(client, email, password=PASSWORD, remember=False):
    data = {"email": email, "password": password}
    if remember:
        data["remember"] = "y"
    return client.post("/login", data=data)


def signed_in(client) -> bool:
    response = client.get("/dashboard")
    return response.status_code == 200


def signup(client, email, password=PASSWORD):
    return client.post("/signup", data={"email": email, "password": password, "confirm": password})


def audit_actions(user) -> list[str]:
    return list(
        db.session.execute(
            select(AuditLogEntry.action)
            .where(AuditLogEntry.target_user_id == user.id)
            .order_by(AuditLogEntry.id)
        ).scalars()
    )


class TestVerificationBeforeGenerating:
    def test_sign_up_shows_six_credits_and_generate_asks_for_verification(self, client, mailbox):
        signup(client, "new.person@example.com")
        user = accounts.find_user_by_email("new.person@example.com")
        assert (user.credits_remaining, user.is_verified) == (6, False)
        dashboard = client.get("/dashboard").get_data(as_text=True)
        assert "6/6" in dashboard and "Confirm your email to start generating" in dashboard
        feature = client.get("/dashboard/redecorate-room").get_data(as_text=True)
        assert "data-spends-credit" not in feature

        response = start(client, "interior")
        assert response.status_code == 403
        assert response.headers["HX-Retarget"] == "#modal-root"
        text = response.get_data(as_text=True)
        assert "Confirm your email to start generating" in text and "Resend the email" in text
        assert "your 6 credits are waiting" in text
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(CreditReservation)
                .where(CreditReservation.user_id == user.id)
            )
            == 0
        )
        assert credits.get_user_credits(user.id).remaining == 6

        page = start(client, "interior", htmx=False)
        assert page.status_code == 403 and "Confirm your email" in page.get_data(as_text=True)

        run_jobs()
        message = mailbox.wait_for("new.person@example.com", "Confirm your email")
        verified = client.get(link_path(message.text, "/verify-email/"))
        assert verified.status_code == 302 and verified.headers["Location"] == "/dashboard"
        db.session.refresh(user)
        assert user.is_verified
        assert start(client, "interior", generation_id="gen-after").status_code == 200
        assert credits.get_user_credits(user.id).remaining == 5

    def test_resend_mails_a_new_link(self, client, mailbox):
        signup(client, "resend.me@example.com")
        run_jobs()
        response = client.post("/verify-email/resend", headers={"HX-Request": "true"})
        assert "We sent a new link to resend.me@example.com" in response.get_data(as_text=True)
        run_jobs()
        assert mailbox.wait_for("resend.me@example.com", "Confirm your email", count=2)

    def test_a_bad_link_says_so(self, client):
        response = client.get("/verify-email/not-a-token")
        assert response.status_code == 400
        assert "invalid or has expired" in response.get_data(as_text=True)

    def test_the_link_works_signed_out_and_asks_to_sign_in(self, make_user, client):
        from credit_app.services import account_tokens

        user = make_user(verified=False)
        token = account_tokens.verification_token(user.id, user.email)
        response = client.get(f"/verify-email/{token}")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        assert user.is_verified


class TestSignupAbuse:
    def test_a_second_gmail_account_starts_at_zero_with_the_reason(self, client, app):
        signup(client, "ab@gmail.com")
        other = app.test_client()
        response = signup(other, "a.b+x@gmail.com")
        assert response.status_code == 302
        user = accounts.find_user_by_email("a.b+x@gmail.com")
        (row,) = db.session.execute(
            select(CreditTransaction).where(CreditTransaction.user_id == user.id)
        ).scalars()
        assert (row.amount, row.feature_used) == (0, "registration")
        assert "already received them" in row.metadata_["reason"]
        page = other.get("/dashboard").get_data(as_text=True)
        assert "0/0" in page and "already had its free credits" in page
        assert "already received them" in page

    def test_a_disposable_domain_is_refused_with_a_clear_message(self, client):
        response = signup(client, "someone@mailinator.com")
        assert response.status_code == 422
        assert "throwaway email services cannot sign up" in response.get_data(as_text=True)
        assert accounts.find_user_by_email("someone@mailinator.com") is None

    def test_sign_ups_are_limited_per_client_address(self, app, client, monkeypatch):
        monkeypatch.setitem(app.config, "RATELIMIT_SIGNUP", "2 per hour")
        browser = app.test_client()
        browser.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        assert signup(browser, "not-an-email").status_code == 422
        for number in range(2):
            fresh = app.test_client()
            fresh.environ_base["REMOTE_ADDR"] = "203.0.113.7"
            assert signup(fresh, f"limit-{number}@example.com").status_code == 302
        blocked = app.test_client()
        blocked.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        assert signup(blocked, "limit-3@example.com").status_code == 429
        assert accounts.find_user_by_email("limit-3@example.com") is None
        elsewhere = app.test_client()
        elsewhere.environ_base["REMOTE_ADDR"] = "203.0.113.8"
        assert signup(elsewhere, "limit-4@example.com").status_code == 302


def page_text_without(response, address: str) -> str:
    """The page with the address typed and its CSRF token blanked: the token is signed with
    the second it was made, so two answers a second apart differ there and nowhere else."""
    text = response.get_data(as_text=True).replace(address, "ADDRESS")
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', text)
    assert token, "every page carries its CSRF token"
    return text.replace(token.group(1), "CSRF-TOKEN")


class TestPasswordReset:
    def test_the_same_answer_whether_or_not_the_address_exists(self, client, user, mailbox):
        known = client.post("/forgot-password", data={"email": user.email})
        unknown = client.post("/forgot-password", data={"email": "nobody@example.com"})
        assert known.status_code == unknown.status_code == 200
        assert page_text_without(known, user.email) == page_text_without(
            unknown, "nobody@example.com"
        )
        run_jobs()
        assert mailbox.wait_for(user.email, "Reset your")
        assert mailbox.messages("nobody@example.com") == []

    def test_reset_ends_every_session_and_remember_cookie_and_works_once(
        self, app, client, user, mailbox
    ):
        other_device = app.test_client()
        assert sign_in(other_device, user.email, remember=True).status_code == 302
        other_device.delete_cookie("session")
        assert signed_in(other_device), "the remember-me cookie alone signs in"
        assert sign_in(other_device, user.email).status_code == 302

        client.post("/forgot-password", data={"email": user.email})
        run_jobs()
        path = link_path(mailbox.wait_for(user.email, "Reset your").text, "/reset-password/")
        assert "Choose a new password" in client.get(path).get_data(as_text=True)
        weak = client.post(path, data={"password": "short", "confirm": "short"})
        assert weak.status_code == 422 and "at least 10 characters" in weak.get_data(as_text=True)
        done = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert done.status_code == 302 and done.headers["Location"] == "/login"

        assert not signed_in(other_device)
        other_device.delete_cookie("session")
        assert not signed_in(other_device), "the remember-me cookie no longer works"
        again = client.get(path)
        assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
        assert sign_in(client, user.email, PASSWORD).status_code == 401
        assert sign_in(client, user.email, NEW_PASSWORD).status_code == 302

    def test_resets_are_limited_per_address_and_per_client(self, app, client, user, monkeypatch):
        monkeypatch.setitem(app.config, "RATELIMIT_RESET_ADDRESS", "2 per hour")
        monkeypatch.setitem(app.config, "RATELIMIT_RESET_CLIENT", "4 per hour")
        address = "Reset.Limit@gmail.com"
        for number in range(2):
            browser = app.test_client()
            browser.environ_base["REMOTE_ADDR"] = f"198.51.100.{number}"
            assert browser.post("/forgot-password", data={"email": address}).status_code == 200
        folded = app.test_client()
        folded.environ_base["REMOTE_ADDR"] = "198.51.100.9"
        assert (
            folded.post("/forgot-password", data={"email": "resetlimit+x@gmail.com"}).status_code
            == 429
        )
        one_client = app.test_client()
        one_client.environ_base["REMOTE_ADDR"] = "198.51.100.50"
        statuses = [
            one_client.post("/forgot-password", data={"email": f"p{n}@example.com"}).status_code
            for n in range(5)
        ]
        assert statuses == [200, 200, 200, 200, 429]


class TestAccountSettings:
    def test_change_password_keeps_this_session_and_ends_the_others(
        self, app, client, user, mailbox
    ):
        assert sign_in(client, user.email).status_code == 302
        other = app.test_client()
        sign_in(other, user.email)
        wrong = client.post(
            "/settings/password",
            data={
                "pw-current_password": "not it at all",
                "pw-password": NEW_PASSWORD,
                "pw-confirm": NEW_PASSWORD,
            },
        )
        assert wrong.status_code == 422 and "not your current password" in wrong.get_data(
            as_text=True
        )
        response = client.post(
            "/settings/password",
            data={
                "pw-current_password": PASSWORD,
                "pw-password": NEW_PASSWORD,
                "pw-confirm": NEW_PASSWORD,
            },
        )
        assert response.status_code == 302
        assert signed_in(client) and not signed_in(other)
        run_jobs()
        assert mailbox.wait_for(user.email, "password was changed")

    def test_change_email_is_verified_before_it_takes_effect(self, client, user, mailbox):
        sign_in(client, user.email)
        response = client.post(
            "/settings/email", data={"em-new_email": "moved@example.com", "em-password": PASSWORD}
        )
        assert response.status_code == 302
        page = client.get("/settings/account").get_data(as_text=True)
        assert "Waiting for you to open the link" in page and "moved@example.com" in page
        db.session.refresh(user)
        assert user.email != "moved@example.com"
        run_jobs()
        path = link_path(mailbox.wait_for("moved@example.com", "new email").text, "/verify-email/")
        assert client.get(path).headers["Location"] == "/settings/account"
        db.session.refresh(user)
        assert user.email == "moved@example.com" and user.pending_email is None

    def test_a_refused_email_change_says_why(self, client, user):
        sign_in(client, user.email)
        response = client.post(
            "/settings/email", data={"em-new_email": "x@mailinator.com", "em-password": PASSWORD}
        )
        assert response.status_code == 422
        assert "throwaway" in response.get_data(as_text=True)

    def test_sign_out_everywhere(self, app, client, user):
        sign_in(client, user.email)
        other = app.test_client()
        sign_in(other, user.email, remember=True)
        response = client.post("/settings/sign-out-everywhere")
        assert response.status_code == 302 and response.headers["Location"] == "/login"
        assert not signed_in(client) and not signed_in(other)
        other.delete_cookie("session")
        assert not signed_in(other)

    def test_notification_choices_are_saved(self, user_client, user):
        response = user_client.post("/settings/notifications", data={"nt-one_credit_left": "y"})
        assert response.status_code == 302
        assert user.email_opt_outs == ["credits_used_up", "payment_failed"]
        page = user_client.get("/settings/account").get_data(as_text=True)

        def box(name: str) -> str:
            return re.search(rf'<input[^>]*id="nt-{name}"[^>]*>', page).group(0)

        assert "checked" in box("one_credit_left")
        assert "checked" not in box("payment_failed")

    def test_an_old_scrypt_hash_is_rehashed_at_sign_in(self, client, user):
        user.password_hash = generate_password_hash(PASSWORD, method="scrypt")
        db.session.commit()
        assert sign_in(client, user.email).status_code == 302
        db.session.refresh(user)
        assert user.password_hash.startswith("$argon2id$")

    def test_a_session_from_before_versions_still_works(self, app, user):
        from flask_login.utils import _create_identifier

        browser = app.test_client()
        with app.test_request_context(environ_base=browser.environ_base):
            identifier = _create_identifier()
        with browser.session_transaction() as session:
            session["_user_id"] = str(user.id)
            session["_fresh"] = True
            session["_id"] = identifier
        assert signed_in(browser)
        accounts.end_all_sessions(user)
        db.session.commit()
        assert not signed_in(browser)


def enable_two_factor(admin) -> list[str]:
    two_factor.ensure_secret(admin)
    codes = two_factor.enable(admin, pyotp.TOTP(admin.totp_secret).now())
    admin.totp_last_step = None
    db.session.commit()
    return codes


class TestAdminTwoFactor:
    def test_admins_with_two_factor_sign_in_with_a_code_and_it_is_audited(self, client, admin):
        enable_two_factor(admin)
        response = sign_in(client, admin.email)
        assert response.headers["Location"].startswith("/login/two-factor")
        assert not signed_in(client)
        wrong = client.post(
            "/login/two-factor",
            data={
                "code": "000000" if pyotp.TOTP(admin.totp_secret).now() != "000000" else "111111"
            },
        )
        assert wrong.status_code == 401 and "not right" in wrong.get_data(as_text=True)
        right = client.post("/login/two-factor", data={"code": pyotp.TOTP(admin.totp_secret).now()})
        assert right.status_code == 302 and signed_in(client)
        assert audit_actions(admin)[-2:] == ["staff.sign_in_failed", "staff.sign_in"]

    def test_a_recovery_code_signs_in_once(self, app, client, admin):
        codes = enable_two_factor(admin)
        sign_in(client, admin.email)
        assert client.post("/login/two-factor", data={"code": codes[0]}).status_code == 302
        other = app.test_client()
        sign_in(other, admin.email)
        assert other.post("/login/two-factor", data={"code": codes[0]}).status_code == 401

    def test_a_wrong_admin_password_is_audited(self, client, admin, user):
        assert sign_in(client, admin.email, "not the password").status_code == 401
        assert sign_in(client, user.email, "not the password").status_code == 401
        assert audit_actions(admin) == ["staff.sign_in_failed"]
        assert audit_actions(user) == []

    def test_where_required_admins_set_up_two_factor_before_they_are_in(
        self, app, client, admin, monkeypatch
    ):
        monkeypatch.setitem(app.config, "ADMIN_TWO_FACTOR_REQUIRED", True)
        response = sign_in(client, admin.email)
        assert response.headers["Location"].startswith("/login/two-factor/setup")
        page = client.get("/login/two-factor/setup").get_data(as_text=True)
        db.session.refresh(admin)
        assert admin.totp_secret in page and "data:image/svg+xml" in page
        assert client.get("/admin/").status_code == 302
        done = client.post(
            "/login/two-factor/setup", data={"code": pyotp.TOTP(admin.totp_secret).now()}
        )
        text = done.get_data(as_text=True)
        assert done.status_code == 200 and "Two-factor sign-in is on" in text
        assert len(re.findall(r"<li><code>[0-9a-f]{6}-[0-9a-f]{6}</code></li>", text)) == 10
        assert client.get("/admin/").status_code == 200
        assert "staff.two_factor_enabled" in audit_actions(admin)

    def test_an_admin_session_without_two_factor_is_sent_to_set_it_up(
        self, app, admin_client, monkeypatch
    ):
        monkeypatch.setitem(app.config, "ADMIN_TWO_FACTOR_REQUIRED", True)
        response = admin_client.get("/admin/")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login/two-factor/setup")
        assert (
            admin_client.get("/admin/", headers={"Accept": "application/json"}).status_code == 403
        )

    def test_admins_without_the_requirement_sign_in_with_the_password(self, client, admin):
        assert sign_in(client, admin.email).headers["Location"] == "/dashboard"
        assert audit_actions(admin) == ["staff.sign_in"]

    def test_a_signed_in_admin_cannot_read_an_enabled_secret_again(self, app, admin):
        enable_two_factor(admin)
        browser = app.test_client(user=admin)
        response = browser.get("/login/two-factor/setup")
        assert response.status_code == 302 and response.headers["Location"] == "/settings/account"

    def test_the_code_page_needs_a_password_first(self, client):
        assert client.get("/login/two-factor").headers["Location"].startswith("/login")


class TestAdminDisabling:
    def test_disabling_ends_every_session_and_sign_in(self, app, admin_client, user, admin):
        browser = app.test_client()
        sign_in(browser, user.email, remember=True)
        page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
        assert "verified" in page and "Disable sign-in" in page
        missing = admin_client.post(
            f"/admin/users/{user.id}/sign-in", data={"action": "disable", "access-reason": ""}
        )
        assert missing.status_code == 422
        response = admin_client.post(
            f"/admin/users/{user.id}/sign-in", data={"action": "disable", "access-reason": "abuse"}
        )
        assert response.status_code == 302
        assert not signed_in(browser)
        browser.delete_cookie("session")
        assert not signed_in(browser)
        assert sign_in(browser, user.email).status_code == 401
        assert audit_actions(user)[-1] == "user.disable"
        admin_client.post(
            f"/admin/users/{user.id}/sign-in",
            data={"action": "enable", "access-reason": "appeal accepted"},
        )
        assert sign_in(browser, user.email).status_code == 302

    def test_a_disabled_accounts_api_token_stops_working(self, admin_client, user, client):
        _, token = accounts.create_api_token(user.id, "script")
        db.session.commit()
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/user/credits", headers=headers).status_code == 200
        admin_client.post(
            f"/admin/users/{user.id}/sign-in", data={"action": "disable", "access-reason": "abuse"}
        )
        assert client.get("/api/user/credits", headers=headers).status_code == 401

    def test_the_admin_page_shows_an_unverified_address(self, admin_client, make_user):
        user = make_user(verified=False)
        page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
        assert "not verified" in page


class TestSecurityHeaders:
    def test_csp_allows_no_inline_script_and_permissions_are_off(self, user_client):
        response = user_client.get("/dashboard/redecorate-room")
        policy = response.headers["Content-Security-Policy"]
        script = next(part for part in policy.split(";") if "script-src" in part)
        assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
        assert "frame-ancestors 'none'" in policy
        assert "camera=()" in response.headers["Permissions-Policy"]
        html = response.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
        assert not re.search(r"\son[a-z]+=", html) and "js:" not in html
        assert '"includeIndicatorStyles": false' in html

    @pytest.mark.parametrize(
        "path", ["/login", "/signup", "/forgot-password", "/api/openapi.json", "/healthz"]
    )
    def test_every_response_has_them(self, client, path):
        response = client.get(path)
        assert "Content-Security-Policy" in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    def test_vary_is_left_to_the_htmx_logic(self, user_client):
        response = user_client.get("/dashboard", headers={"HX-Request": "true"})
        assert "HX-Request" in response.headers["Vary"]

    def test_json_answers_get_the_api_set_and_are_never_cached(self, user_client):
        response = user_client.get("/api/user/credits")
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Permissions-Policy" not in response.headers
        page = user_client.get("/api/docs")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
