"""The view limiter: limits on views hold; its per-request check runs only when a limit that
is not on a view (a default) is configured."""

from __future__ import annotations

from flask import Flask

from credit_app.platform.extensions import ViewLimiter


def _app(**limiter_options) -> tuple[Flask, ViewLimiter]:
    app = Flask(__name__)
    limiter = ViewLimiter(key_func=lambda: "everyone", storage_uri="memory://", **limiter_options)
    limiter.init_app(app)

    @app.get("/free")
    def free() -> str:
        return "ok"

    @app.get("/limited")
    @limiter.limit("2 per minute")
    def limited() -> str:
        return "ok"

    return app, limiter


def test_a_limit_on_a_view_still_holds():
    app, _ = _app()
    client = app.test_client()
    assert [client.get("/limited").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/free").status_code for _ in range(5)] == [200] * 5


def test_a_default_limit_still_applies_to_every_view():
    app, _ = _app(default_limits=["3 per minute"])
    client = app.test_client()
    assert [client.get("/free").status_code for _ in range(4)] == [200, 200, 200, 429]


def _resolutions(app: Flask, limiter: ViewLimiter, path: str, monkeypatch) -> int:
    """How many times serving `path` worked out which limits apply."""
    calls = []
    original = limiter.limit_manager.resolve_limits
    monkeypatch.setattr(
        limiter.limit_manager,
        "resolve_limits",
        lambda *args, **kwargs: calls.append(args) or original(*args, **kwargs),
    )
    assert app.test_client().get(path).status_code == 200
    return len(calls)


def test_a_view_without_limits_costs_the_limiter_nothing(monkeypatch):
    app, limiter = _app()
    assert _resolutions(app, limiter, "/free", monkeypatch) == 0
    assert _resolutions(app, limiter, "/limited", monkeypatch) == 1


def test_with_a_default_limit_every_request_is_checked(monkeypatch):
    app, limiter = _app(default_limits=["100 per minute"])
    assert _resolutions(app, limiter, "/free", monkeypatch) == 1


def test_limit_headers_are_still_sent_where_a_limit_was_checked():
    app, _ = _app(headers_enabled=True)
    client = app.test_client()
    assert client.get("/limited").headers["X-RateLimit-Limit"] == "2"
    assert "X-RateLimit-Limit" not in client.get("/free").headers
    assert client.get("/limited").headers["X-RateLimit-Remaining"] == "0"
