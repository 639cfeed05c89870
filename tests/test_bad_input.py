"""Bad input at the edges: control characters, deep JSON and out-of-range cursors get a clear
4xx (or are cleaned) and never a 500; what they touch is left as it was."""

from __future__ import annotations

import base64
import string

import pytest
from flask import current_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from credit_app.errors import ValidationFailed
from credit_app.models import ApiToken, AuditLogEntry, CreditTransaction, Generation, User
from credit_app.platform.extensions import db
from credit_app.platform.input_text import PRINTABLE_PATTERN, clean_line, clean_text
from credit_app.services import credits, paging
from credit_app.web.forms import LoginForm
from credit_app.web.request_json import MAX_JSON_DEPTH, json_depth
from tests.blueprints.test_generations import start, storage

pytestmark = pytest.mark.usefixtures(storage.__name__)


@pytest.fixture(autouse=True)
def sign_in_limit_of_its_own(app, monkeypatch):
    """These tests sign in dozens of times from 127.0.0.1; a limit of their own keeps them
    from using up the one later tests sign in under."""
    monkeypatch.setitem(app.config, "RATELIMIT_AUTH", "100000 per minute")


CONTROL_CHARACTERS = [chr(code) for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))]


def control_text(
    min_size: int = 0, max_size: int = 40, surrogates: bool = True
) -> st.SearchStrategy[str]:
    """Text a person might type, salted with control characters and NULs, and with lone
    surrogates unless it is form data (a form is UTF-8 bytes; only JSON can carry them)."""
    specials = ["\u2028", "\u2029", "é", *(["\ud800", "\udfff"] if surrogates else [])]
    return st.text(
        alphabet=st.one_of(
            st.sampled_from(string.ascii_letters + string.digits + " .-@"),
            st.sampled_from(CONTROL_CHARACTERS),
            st.sampled_from(specials),
        ),
        min_size=min_size,
        max_size=max_size,
    )


def ledger_rows(user_id: int) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(CreditTransaction)
        .where(CreditTransaction.user_id == user_id)
    ).scalar_one()


class TestCleaningRule:
    @given(control_text())
    def test_a_clean_line_has_no_control_characters_or_surrogates(self, value):
        cleaned = clean_line(value)
        assert not any(char in cleaned for char in CONTROL_CHARACTERS)
        assert not any(0xD800 <= ord(char) <= 0xDFFF for char in cleaned)
        assert cleaned == cleaned.strip()
        cleaned.encode("utf-8")

    @given(control_text())
    def test_clean_text_keeps_line_breaks_only(self, value):
        cleaned = clean_text(value)
        assert "\r" not in cleaned and "\x00" not in cleaned
        assert clean_text(cleaned) == cleaned

    def test_examples(self):
        assert clean_line(" Apology\x00 for\tthe\r\noutage\x7f ") == "Apology for the outage"
        assert clean_text("two\r\nlines\x00") == "two\nlines"


class TestApi:
    def test_a_grant_reason_with_nul_is_cleaned(self, admin_client, user):
        response = admin_client.post(
            "/api/user/credits/grant",
            json={"user_id": user.id, "amount": 2, "reason": "Sorry\x00 for the outage"},
        )
        assert response.status_code == 200
        entry = db.session.get(CreditTransaction, response.get_json()["transaction_id"])
        assert entry.metadata_["reason"] == "Sorry for the outage"

    def test_a_reason_of_only_control_characters_is_refused(self, admin_client, user):
        response = admin_client.post(
            "/api/user/credits/grant",
            json={"user_id": user.id, "amount": 2, "reason": "\x00\x01\x02"},
        )
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "validation_error"
        assert error["fields"][0]["field"] == "reason"
        assert credits.get_user_credits(user.id).remaining == 6

    @pytest.mark.parametrize(
        ("generation_id", "status"),
        [
            ("gen\x00", 422),
            ("gen\n1", 422),
            ("a\u2028b", 422),
            ("\ud800", 400),  # half a surrogate pair is no character: the JSON itself is invalid
        ],
    )
    def test_a_generation_id_with_control_characters_is_refused(
        self, user_client, user, generation_id, status
    ):
        response = user_client.post(
            "/api/user/credits/consume",
            json={"feature": "interior", "generation_id": generation_id},
        )
        assert response.status_code == status
        assert credits.get_user_credits(user.id).remaining == 6

    def test_the_printable_rule_is_in_the_published_schema(self, client):
        spec = client.get("/api/openapi.json").get_json()
        consume = spec["components"]["schemas"]["ConsumeRequest"]
        pattern = consume["properties"]["generation_id"]["anyOf"][0]["pattern"]
        assert pattern == PRINTABLE_PATTERN

    @pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 100_000])
    def test_deeply_nested_json_is_a_400(self, user_client, user, depth):
        body = '{"feature": "interior", "x": ' + "[" * depth + "]" * depth + "}"
        response = user_client.post(
            "/api/user/credits/consume", data=body, content_type="application/json"
        )
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "bad_json"
        assert credits.get_user_credits(user.id).remaining == 6

    def test_brackets_inside_strings_do_not_count(self):
        assert json_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
        assert json_depth(b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b": [[]]}') == 3

    @pytest.mark.parametrize("transaction_id", [2**31, 2**63, 10**30, 0])
    def test_a_cursor_out_of_range_is_a_422(self, user_client, transaction_id):
        cursor = base64.urlsafe_b64encode(f"tx:{transaction_id}".encode()).decode().rstrip("=")
        response = user_client.get(f"/api/user/credits/history?cursor={cursor}")
        assert response.status_code == 422
        assert response.get_json()["error"]["field"] == "cursor"

    def test_the_largest_cursor_is_fine(self, user_client):
        cursor = paging.encode_cursor(2**31 - 1)
        response = user_client.get(f"/api/user/credits/history?cursor={cursor}")
        assert response.status_code == 200
        assert len(response.get_json()["items"]) == 1


class TestPages:
    def test_a_login_email_with_nul_is_just_a_wrong_login(self, client, user):
        response = client.post(
            "/login", data={"email": user.email + "\x00", "password": "wrong password!"}
        )
        assert response.status_code == 401 or response.status_code == 422
        assert "do not match" in response.get_data(as_text=True)

    def test_a_login_email_with_nul_signs_in_with_the_right_password(self, client, user):
        from tests.conftest import PASSWORD

        response = client.post("/login", data={"email": "\x00" + user.email, "password": PASSWORD})
        assert response.status_code == 302

    def test_admin_search_with_nul(self, admin_client, user):
        response = admin_client.get("/admin/?q=" + user.email[:6] + "%00")
        assert response.status_code == 200
        assert user.email in response.get_data(as_text=True)

    def test_admin_ids_out_of_range_are_a_422(self, admin_client):
        assert admin_client.get(f"/admin/audit?user={2**31}").status_code == 422

    def test_an_api_token_name_with_nul(self, user_client, user):
        response = user_client.post("/settings/api-tokens", data={"name": "lap\x00top"})
        assert response.status_code == 200
        names = (
            db.session.execute(select(ApiToken.name).where(ApiToken.user_id == user.id))
            .scalars()
            .all()
        )
        assert names == ["laptop"]

    def test_an_admin_grant_reason_with_nul(self, admin_client, user):
        response = admin_client.post(
            f"/admin/users/{user.id}/credits",
            data={"operation": "grant", "amount": "3", "reason": "Beta\x00 tester"},
        )
        assert response.status_code == 302
        entry = (
            db.session.execute(select(AuditLogEntry).order_by(AuditLogEntry.id.desc()))
            .scalars()
            .first()
        )
        assert entry.details["reason"] == "Beta tester"

    def test_a_prompt_with_nul_starts_a_clean_generation(self, user_client, user):
        response = start(user_client, "interior", prompt="warm\x00 light\r\nplease")
        assert response.status_code == 200
        generation = db.session.execute(
            select(Generation).where(Generation.user_id == user.id)
        ).scalar_one()
        assert generation.options["prompt"] == "warm light\nplease"

    def test_a_feature_page_sent_deep_json_does_not_crash(self, user_client, user):
        depth = 50_000
        response = user_client.post(
            "/dashboard/redecorate-room",
            data="[" * depth + "]" * depth,
            content_type="application/json",
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 422
        assert credits.get_user_credits(user.id).remaining == 6


def test_the_upload_is_removed_when_its_transaction_rolls_back(app, user_client, user, monkeypatch):
    from credit_app.services import generations

    def flush_fails(*args, **kwargs):
        raise ValidationFailed("refused by the database", field="form")

    stored = app.config["GENERATION_STORAGE_PATH"]
    real_start = generations.start_generation

    def start_then_fail(*args, **kwargs):
        real_start(*args, **kwargs)
        flush_fails()

    monkeypatch.setattr(
        "credit_app.web.blueprints.dashboard.generations.start_generation", start_then_fail
    )
    response = start(user_client, "interior")
    assert response.status_code == 422
    assert not list(stored.rglob("input.*"))
    assert credits.get_user_credits(user.id).remaining == 6


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=control_text(max_size=90, surrogates=False),
    reason=control_text(max_size=60, surrogates=False),
    email=control_text(max_size=60, surrogates=False),
    search=control_text(max_size=30, surrogates=False),
)
def test_free_text_form_fields_never_fail(admin_client, admin, user, name, reason, email, search):
    """Whatever a person pastes into the free-text fields, the answer is a page, not a 500:
    either the action happened (and exactly once) or it was refused with a 422 and changed
    nothing."""
    tokens = token_count(admin.id)
    created = admin_client.post("/settings/api-tokens", data={"name": name})
    assert (created.status_code, token_count(admin.id)) in ((200, tokens + 1), (422, tokens))

    rows = ledger_rows(user.id)
    granted = admin_client.post(
        f"/admin/users/{user.id}/credits",
        data={"operation": "grant", "amount": "1", "reason": reason},
    )
    assert (granted.status_code, ledger_rows(user.id)) in ((302, rows + 1), (422, rows))

    assert admin_client.get("/admin/", query_string={"q": search}).status_code == 200
    with admin_client.application.test_client() as anonymous:
        refused = anonymous.post("/login", data={"email": email, "password": "x" * 12})
        assert refused.status_code == (401 if login_form_accepts(email, "x" * 12) else 422)
    assert db.session.get(User, user.id) is not None


def login_form_accepts(email: str, password: str) -> bool:
    """Whether the sign-in form's own rules accept these fields (then a wrong password is a
    401; a refused field is a 422)."""
    with current_app.test_request_context(
        "/login", method="POST", data={"email": email, "password": password}
    ):
        return LoginForm().validate()


def token_count(user_id: int) -> int:
    return db.session.execute(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id)
    ).scalar_one()


class TestJsonBodies:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ("[1, 2]", "The request body must be a JSON object."),
            ('"interior"', "The request body must be a JSON object."),
            ('{"feature": "interior",', "The request body is not valid JSON"),
            ('{"feature": "\\ud800"}', "The request body is not valid JSON"),
        ],
    )
    def test_a_body_that_is_not_a_json_object_is_a_400_that_says_so(
        self, user_client, user, body, message
    ):
        response = user_client.post(
            "/api/user/credits/consume", data=body, content_type="application/json"
        )
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["code"] == "bad_json" and error["message"].startswith(message)
        assert credits.get_user_credits(user.id).remaining == 6

    def test_a_body_sent_as_a_form_is_a_400(self, user_client, user):
        response = user_client.post("/api/user/credits/consume", data={"feature": "interior"})
        assert response.status_code == 400 and response.get_json()["error"]["code"] == ("bad_json")
