import pytest
from sqlalchemy import select

from credit_app.models import CreditTransaction
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits

CONSUME = "/api/user/credits/consume"
GRANT = "/api/user/credits/grant"
HISTORY = "/api/user/credits/history"


def error_code(response):
    assert set(response.json) == {"error"}
    assert {"code", "message"} <= set(response.json["error"])
    return response.json["error"]["code"]


class TestAuthentication:
    @pytest.mark.parametrize(
        "method,path",
        [("get", "/api/user/credits"), ("post", CONSUME), ("get", HISTORY), ("post", GRANT)],
    )
    def test_anonymous_gets_json_401_not_a_redirect(self, client, method, path):
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401
        assert error_code(response) == "unauthorized"

    def test_bearer_token(self, client, user):
        _, token = accounts.create_api_token(user.id, "script")
        response = client.get("/api/user/credits", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json["remaining"] == 6

    def test_bearer_post_needs_no_csrf(self, app, client, user, monkeypatch):
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        _, token = accounts.create_api_token(user.id, "script")
        response = client.post(
            CONSUME, json={"feature": "video"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200

    @pytest.mark.parametrize("header", ["Bearer ca_wrong", "Bearer ", "Basic abc", "Bearer x" * 50])
    def test_bad_tokens(self, client, header):
        response = client.get("/api/user/credits", headers={"Authorization": header})
        assert response.status_code == 401

    def test_revoked_token(self, client, user):
        token, plaintext = accounts.create_api_token(user.id, "old")
        accounts.revoke_api_token(user.id, token.id)
        response = client.get("/api/user/credits", headers={"Authorization": f"Bearer {plaintext}"})
        assert response.status_code == 401


class TestCsrf:
    def test_cookie_post_without_token_or_same_origin_is_refused(self, app, user, monkeypatch):
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        client = app.test_client(user=user)
        response = client.post(CONSUME, json={"feature": "interior"})
        assert response.status_code == 403 and error_code(response) == "csrf_failed"
        cross_site = client.post(
            CONSUME, json={"feature": "interior"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross_site.status_code == 403
        assert credits.get_user_credits(user.id).remaining == 6

    def test_cookie_post_with_csrf_token(self, app, user, monkeypatch):
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        client = app.test_client(user=user)
        page = client.get("/dashboard")
        token = page.get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]
        response = client.post(
            CONSUME, json={"feature": "interior"}, headers={"X-CSRFToken": token}
        )
        assert response.status_code == 200

    def test_same_origin_fetch_is_accepted(self, app, user_client, monkeypatch):
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
        assert user_client.post(CONSUME, json={"feature": "interior"}).status_code == 200


class TestGetCredits:
    def test_shape(self, user_client):
        response = user_client.get("/api/user/credits")
        assert response.status_code == 200
        assert set(response.json) == {"remaining", "total", "subscription_status", "last_updated"}
        assert (response.json["remaining"], response.json["total"]) == (6, 6)
        assert response.json["subscription_status"] == "free"


class TestConsume:
    def test_success_shape(self, user_client):
        response = user_client.post(CONSUME, json={"feature": "interior", "generation_id": "abc"})
        assert response.status_code == 200
        assert response.json == {
            "success": True,
            "remaining_credits": 5,
            "message": "Credit consumed.",
        }

    def test_retry_with_the_same_generation_id_changes_nothing(self, user_client, user):
        for _ in range(3):
            response = user_client.post(
                CONSUME, json={"feature": "video", "generation_id": "retry"}
            )
            assert response.status_code == 200 and response.json["remaining_credits"] == 5
        assert credits.get_user_credits(user.id).remaining == 5

    def test_a_replay_repeats_the_first_answer_and_says_so(self, user_client):
        first = user_client.post(CONSUME, json={"feature": "video", "generation_id": "once"})
        user_client.post(CONSUME, json={"feature": "video", "generation_id": "twice"})
        again = user_client.post(CONSUME, json={"feature": "video", "generation_id": "once"})
        assert (
            again.json
            == first.json
            == {"success": True, "remaining_credits": 5, "message": "Credit consumed."}
        )
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers

    def test_402_with_upgrade_url_when_out_of_credits(self, user_client, user):
        for _ in range(6):
            user_client.post(CONSUME, json={"feature": "remove"})
        response = user_client.post(CONSUME, json={"feature": "remove"})
        assert response.status_code == 402
        assert error_code(response) == "insufficient_credits"
        assert response.json["error"]["upgrade_url"].endswith(
            "/dashboard/subscription?feature=remove"
        )
        assert response.json["error"]["remaining"] == 0

    def test_409_for_a_generation_id_reused_for_another_feature(self, user_client):
        user_client.post(CONSUME, json={"feature": "video", "generation_id": "x"})
        response = user_client.post(CONSUME, json={"feature": "sketch", "generation_id": "x"})
        assert response.status_code == 409 and error_code(response) == "idempotency_conflict"

    def test_422_for_unknown_feature(self, user_client):
        response = user_client.post(CONSUME, json={"feature": "hologram"})
        assert response.status_code == 422 and error_code(response) == "unknown_feature"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"feature": 5},
            {"feature": ["interior"]},
            {"feature": "interior", "generation_id": 7},
            {"feature": "interior", "generation_id": ""},
            {"feature": "interior", "generation_id": "g" * 256},
            {"feature": "interior", "user_id": 1},
        ],
    )
    def test_422_for_wrong_fields_and_types(self, user_client, user, body):
        response = user_client.post(CONSUME, json=body)
        assert response.status_code == 422 and error_code(response) == "validation_error"
        assert response.json["error"]["fields"]
        assert credits.get_user_credits(user.id).remaining == 6

    @pytest.mark.parametrize(
        "data,content_type",
        [
            ("not json", "application/json"),
            ('["interior"]', "application/json"),
            ("null", "application/json"),
            ("feature=interior", "application/x-www-form-urlencoded"),
        ],
    )
    def test_400_for_bad_json(self, user_client, data, content_type):
        response = user_client.post(CONSUME, data=data, content_type=content_type)
        assert response.status_code == 400 and error_code(response) == "bad_json"

    def test_405_is_json(self, user_client):
        response = user_client.get(CONSUME)
        assert response.status_code == 405 and error_code(response) == "method_not_allowed"

    def test_pro_user_is_not_charged(self, app, make_user):
        pro = make_user(plan="pro")
        client = app.test_client(user=pro)
        client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
        for _ in range(8):
            assert client.post(CONSUME, json={"feature": "video"}).status_code == 200
        assert client.get("/api/user/credits").json["remaining"] == 6


class TestHistory:
    def test_newest_first_and_paged(self, user_client):
        for index in range(3):
            user_client.post(CONSUME, json={"feature": "interior", "generation_id": f"g{index}"})
        page = user_client.get(HISTORY, query_string={"limit": 2}).json
        assert [item["generation_id"] for item in page["items"]] == ["g2", "g1"]
        rest = user_client.get(HISTORY, query_string={"cursor": page["next_cursor"]}).json
        assert [item["kind"] for item in rest["items"]] == ["consume", "grant"]
        assert rest["next_cursor"] is None
        assert set(rest["items"][0]) >= {
            "id",
            "kind",
            "feature_used",
            "amount",
            "credits_consumed",
            "balance_after",
            "generation_id",
            "created_at",
            "metadata",
        }

    @pytest.mark.parametrize(
        "query",
        [{"limit": "abc"}, {"limit": 0}, {"limit": 1000}, {"cursor": "nope"}, {"other": "1"}],
    )
    def test_422_for_bad_query(self, user_client, query):
        response = user_client.get(HISTORY, query_string=query)
        assert response.status_code == 422

    def test_never_shows_another_users_rows(self, user_client, make_user):
        other = make_user()
        credits.consume_credit(other.id, "video", "theirs")
        items = user_client.get(HISTORY).json["items"]
        assert all(item["generation_id"] != "theirs" for item in items)


class TestGrant:
    def test_admin_grants(self, admin_client, admin, user):
        response = admin_client.post(
            GRANT, json={"user_id": user.id, "amount": 4, "reason": "Outage"}
        )
        assert response.status_code == 200
        assert response.json["success"] and response.json["remaining"] == 10
        assert response.json["total"] == 10
        entry = db.session.get(CreditTransaction, response.json["transaction_id"])
        assert entry.actor_id == admin.id

    def test_403_for_non_admins(self, user_client, user):
        response = user_client.post(
            GRANT, json={"user_id": user.id, "amount": 100, "reason": "free money"}
        )
        assert response.status_code == 403 and error_code(response) == "forbidden"
        assert credits.get_user_credits(user.id).remaining == 6

    def test_404_for_unknown_user(self, admin_client):
        response = admin_client.post(GRANT, json={"user_id": 99999999, "amount": 1, "reason": "x"})
        assert response.status_code == 404 and error_code(response) == "user_not_found"

    @pytest.mark.parametrize(
        "body",
        [
            {"amount": 5, "reason": "x"},
            {"user_id": 1, "amount": -5, "reason": "x"},
            {"user_id": 1, "amount": 0, "reason": "x"},
            {"user_id": 1, "amount": 10**30, "reason": "x"},
            {"user_id": 10**30, "amount": 1, "reason": "x"},
            {"user_id": 1, "amount": 1.5, "reason": "x"},
            {"user_id": 1, "amount": "5", "reason": "x"},
            {"user_id": "1", "amount": 5, "reason": "x"},
            {"user_id": 1, "amount": 5, "reason": ""},
            {"user_id": 1, "amount": 5},
            {"user_id": 1, "amount": True, "reason": "x"},
        ],
    )
    def test_422_for_bad_grants(self, admin_client, user, body):
        body = {
            key: (user.id if key == "user_id" and value == 1 else value)
            for key, value in body.items()
        }
        response = admin_client.post(GRANT, json=body)
        assert response.status_code == 422, response.json
        assert credits.get_user_credits(user.id).remaining == 6
        ledger = db.session.execute(
            select(
                CreditTransaction.kind,
                CreditTransaction.amount,
                CreditTransaction.feature_used,
                CreditTransaction.metadata_,
            ).where(CreditTransaction.user_id == user.id)
        ).all()
        # Only the welcome grant: the refused grant posted nothing.
        assert [tuple(row) for row in ledger] == [
            ("grant", 6, "registration", {"reason": "Welcome credits"})
        ]


class TestRateLimit:
    def test_429_with_retry_after_and_json(self, app, user_client, user, monkeypatch):
        monkeypatch.setitem(app.config, "RATELIMIT_CONSUME", "3 per minute")
        statuses = [
            user_client.post(CONSUME, json={"feature": "interior"}).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        limited = user_client.post(CONSUME, json={"feature": "interior"})
        assert limited.status_code == 429
        assert error_code(limited) == "too_many_requests"
        assert int(limited.headers["Retry-After"]) > 0
        assert credits.get_user_credits(user.id).remaining == 3

    def test_one_api_budget_per_user_across_every_api_route(self, app, user_client, monkeypatch):
        monkeypatch.setitem(app.config, "RATELIMIT_API", "5 per minute")
        codes = [user_client.post(CONSUME, json={"feature": "video"}).status_code for _ in range(3)]
        codes += [user_client.get("/api/user/credits").status_code for _ in range(2)]
        codes += [
            user_client.get(HISTORY).status_code,
            user_client.get("/api/openapi.json").status_code,
        ]
        assert codes == [200, 200, 200, 200, 200, 429, 429]

    def test_limits_are_per_user(self, app, make_user, monkeypatch):
        monkeypatch.setitem(app.config, "RATELIMIT_CONSUME", "2 per minute")
        for person in (make_user(), make_user()):
            client = app.test_client(user=person)
            client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
            codes = [client.post(CONSUME, json={"feature": "video"}).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
