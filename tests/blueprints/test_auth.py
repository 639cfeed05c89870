import pytest
from sqlalchemy import func, select, update

from credit_app.models import ApiToken, CreditTransaction, User
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db
from credit_app.services import accounts
from tests.conftest import PASSWORD


def signup(client, email="new@example.com", password=PASSWORD, confirm=None):
    return client.post(
        "/signup",
        data={
            "email": email,
            "password": password,
            "confirm": confirm if confirm is not None else password,
        },
    )


class TestSignup:
    def test_signup_grants_six_credits_in_the_ledger_and_signs_in(self, client):
        response = signup(client, "Fresh.Person@Example.com")
        assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
        user = accounts.find_user_by_email("fresh.person@example.com")
        assert user.email == "fresh.person@example.com"
        assert (user.credits_remaining, user.credits_total) == (6, 6)
        grant = db.session.execute(
            select(CreditTransaction).where(CreditTransaction.user_id == user.id)
        ).scalar_one()
        assert (grant.kind, grant.amount, grant.feature_used) == ("grant", 6, "registration")
        dashboard = client.get("/dashboard").get_data(as_text=True)
        assert "6/6" in dashboard and "6 free credits" in dashboard

    @pytest.mark.parametrize(
        "email,password,confirm,message",
        [
            ("not-an-email", PASSWORD, None, "not valid"),
            ("a@example.com", "short", None, "at least 10 characters"),
            ("a@example.com", "password123", None, "too easy to guess"),
            ("a@example.com", "aaaaaaaaaaaa", None, "too easy to guess"),
            ("a@example.com", PASSWORD, "different password", "do not match"),
            ("", PASSWORD, None, "required"),
        ],
    )
    def test_bad_signups_rerender_with_a_message_and_create_nothing(
        self, client, email, password, confirm, message
    ):
        before = db.session.scalar(select(func.count()).select_from(User))
        response = signup(client, email, password, confirm)
        # Details that are invalid in themselves are 422; 409 is only for an address another
        # account has (test_duplicate_email_any_case), which none of these is.
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
        assert db.session.scalar(select(func.count()).select_from(User)) == before

    def test_duplicate_email_any_case(self, client, user):
        response = signup(client, user.email.upper())
        assert response.status_code == 409
        assert "already exists" in response.get_data(as_text=True)

    def test_password_may_not_be_the_email(self, client):
        response = signup(client, "same@example.com", "same@example.com")
        assert response.status_code == 422
        assert "must not be your email" in response.get_data(as_text=True)

    def test_csrf_is_enforced_on_forms(self, app, client, monkeypatch):
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        response = signup(client, "csrf@example.com")
        assert response.status_code == 403
        assert accounts.find_user_by_email("csrf@example.com") is None

    def test_signed_in_users_are_sent_to_the_dashboard(self, user_client):
        assert user_client.get("/signup").headers["Location"] == "/dashboard"


class TestLogin:
    def test_login_and_logout(self, client, user):
        response = client.post(
            "/login?next=/settings/api-tokens",
            data={"email": user.email.upper(), "password": PASSWORD},
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "/settings/api-tokens"
        assert client.get("/dashboard").status_code == 200
        assert client.post("/logout").status_code == 302
        assert client.get("/dashboard").status_code == 302

    def test_wrong_password(self, client, user):
        response = client.post("/login", data={"email": user.email, "password": "wrong" * 3})
        assert response.status_code == 401
        assert "do not match" in response.get_data(as_text=True)

    def test_unknown_email(self, client):
        response = client.post("/login", data={"email": "ghost@example.com", "password": PASSWORD})
        assert response.status_code == 401

    @pytest.mark.parametrize(
        "target", ["https://evil.example/", "//evil.example/", "javascript:alert(1)"]
    )
    def test_open_redirects_are_refused(self, client, user, target):
        response = client.post(
            "/login",
            query_string={"next": target},
            data={"email": user.email, "password": PASSWORD},
        )
        assert response.headers["Location"] == "/dashboard"

    def test_remember_me_sets_a_cookie(self, client, user):
        client.post("/login", data={"email": user.email, "password": PASSWORD, "remember": "y"})
        assert client.get_cookie("remember_token") is not None

    def test_pages_redirect_anonymous_users_to_login(self, client):
        response = client.get("/dashboard")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")

    def test_htmx_requests_get_an_hx_redirect(self, client):
        response = client.get("/dashboard/credits", headers={"HX-Request": "true"})
        assert response.status_code == 401 and "HX-Redirect" in response.headers


class TestApiTokens:
    def test_create_shows_the_token_once_and_it_works(self, user_client, client, user):
        page = user_client.post("/settings/api-tokens", data={"name": "laptop"})
        text = page.get_data(as_text=True)
        token = text.split('id="new-token">')[1].split("<")[0]
        assert token.startswith("ca_")
        stored = db.session.execute(
            select(ApiToken).where(ApiToken.user_id == user.id)
        ).scalar_one()
        assert token not in stored.token_hash and stored.prefix == token[:10]
        assert token not in user_client.get("/settings/api-tokens").get_data(as_text=True)
        api = client.get("/api/user/credits", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 200

    def test_revoke(self, user_client, client, user):
        token, plaintext = accounts.create_api_token(user.id, "old")
        db.session.commit()
        response = user_client.post(f"/settings/api-tokens/{token.id}/revoke")
        assert response.status_code == 302
        api = client.get("/api/user/credits", headers={"Authorization": f"Bearer {plaintext}"})
        assert api.status_code == 401

    def test_cannot_revoke_someone_elses_token(self, user_client, make_user):
        other = make_user()
        token, plaintext = accounts.create_api_token(other.id, "theirs")
        db.session.commit()
        user_client.post(f"/settings/api-tokens/{token.id}/revoke")
        assert accounts.token_owner(plaintext).id == other.id

    def test_name_is_required(self, user_client):
        response = user_client.post("/settings/api-tokens", data={"name": ""})
        assert response.status_code == 422

    def test_a_token_does_not_sign_in_the_pages(self, client, user):
        _, plaintext = accounts.create_api_token(user.id, "script")
        db.session.commit()
        page = client.get("/dashboard", headers={"Authorization": f"Bearer {plaintext}"})
        assert page.status_code == 302 and page.headers["Location"].startswith("/login")

    def test_a_bearer_header_decides_even_beside_a_signed_in_session(self, user_client, user):
        assert user_client.get("/api/user/credits").json["remaining"] == 6
        bad = user_client.get("/api/user/credits", headers={"Authorization": "Bearer ca_nope"})
        assert bad.status_code == 401 and bad.json["error"]["code"] == "unauthorized"

    def test_a_deleted_accounts_token_finds_nobody(self, user):
        _, plaintext = accounts.create_api_token(user.id, "script")
        db.session.execute(update(User).where(User.id == user.id).values(deleted_at=utcnow()))
        assert accounts.token_owner(plaintext) is None
