"""The API's rate limits: one Redis round trip, one budget across /api, Retry-After, and what
happens when Redis fails."""

import pytest

from credit_app.services import credits
from credit_app.web import api_limits

CONSUME = "/api/user/credits/consume"


@pytest.fixture
def broken_redis(app, monkeypatch):
    """The app's Redis client pointed at a socket nobody listens on."""
    import redis

    monkeypatch.setitem(
        app.extensions,
        "redis",
        redis.Redis.from_url("unix:///nonexistent/redis.sock", socket_connect_timeout=0.2),
    )
    monkeypatch.delitem(app.extensions, "api_limits_script", raising=False)


def test_retry_after_is_the_time_left_in_the_window(app, user_client, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_API", "2 per hour")
    for _ in range(2):
        assert user_client.get("/api/user/credits").status_code == 200
    limited = user_client.get("/api/user/credits")
    assert limited.status_code == 429
    assert limited.json["error"] == {
        "code": "too_many_requests",
        "message": "Too many requests: 2 per 1 hour.",
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600


def test_several_windows_in_one_setting_all_count(app, user_client, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_API", "100 per hour;3 per minute")
    codes = [user_client.get("/api/user/credits").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_anonymous_callers_are_limited_by_address(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_API", "2 per minute")
    codes = [client.get("/api/openapi.json").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_with_redis_down_requests_go_through_when_errors_are_swallowed(
    app, user_client, user, broken_redis, monkeypatch
):
    monkeypatch.setitem(app.config, "RATELIMIT_SWALLOW_ERRORS", True)
    response = user_client.post(CONSUME, json={"feature": "video"})
    assert response.status_code == 200
    assert credits.get_user_credits(user.id).remaining == 5


def test_after_one_redis_failure_the_next_requests_skip_redis(
    app, user_client, broken_redis, monkeypatch
):
    from credit_app.platform.after_commit import breaker

    monkeypatch.setitem(app.config, "RATELIMIT_SWALLOW_ERRORS", True)
    assert user_client.get("/api/user/credits").status_code == 200
    assert breaker.is_open
    calls = []
    monkeypatch.setattr(api_limits, "_hit", lambda windows: calls.append(windows))
    assert user_client.get("/api/user/credits").status_code == 200
    assert calls == []


def test_with_redis_down_and_errors_not_swallowed_the_api_answers_503(
    app, user_client, user, broken_redis, monkeypatch
):
    monkeypatch.setitem(app.config, "RATELIMIT_SWALLOW_ERRORS", False)
    response = user_client.post(CONSUME, json={"feature": "video"})
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert credits.get_user_credits(user.id).remaining == 6


def test_pages_are_left_to_flask_limiter(app):
    with app.test_request_context("/dashboard"):
        assert not api_limits.is_api_request()
    with app.test_request_context("/api/user/credits"):
        assert api_limits.is_api_request()
