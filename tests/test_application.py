"""The application class: Flask's answers, remembered; sessions that cost nothing unused."""

from __future__ import annotations

import pytest
from flask import Flask, session

from credit_app.web.application import CreditApp


@pytest.fixture
def probe() -> CreditApp:
    app = CreditApp(__name__)
    app.config.update(SECRET_KEY="first key", SECRET_KEY_FALLBACKS=[])

    @app.get("/untouched")
    def untouched() -> str:
        return "nothing read"

    @app.get("/read")
    def read() -> str:
        return session.get("name", "nobody")

    @app.get("/write/<name>")
    def write(name: str) -> str:
        session["name"] = name
        return "written"

    return app


def test_each_function_is_asked_about_once_and_gets_flasks_answer(probe, monkeypatch):
    asked = []
    original = Flask.ensure_sync
    monkeypatch.setattr(
        Flask, "ensure_sync", lambda self, func: asked.append(func) or original(self, func)
    )

    def view() -> str:
        return "ok"

    assert probe.ensure_sync(view) is view
    assert probe.ensure_sync(view) is view
    assert asked == [view]


def test_a_coroutine_function_still_gets_flasks_handling(probe):
    async def view() -> str:
        return "ok"

    with pytest.raises(RuntimeError) as mine:
        probe.ensure_sync(view)
    with pytest.raises(RuntimeError) as flasks:
        Flask.ensure_sync(probe, view)
    assert str(mine.value) == str(flasks.value)


def test_unhashable_callables_are_asked_about_every_time(probe):
    class Unhashable:
        __hash__ = None

        def __call__(self) -> str:
            return "ok"

    view = Unhashable()
    assert probe.ensure_sync(view) is view


def test_a_request_that_never_touches_the_session_sets_and_varies_on_nothing(probe):
    response = probe.test_client().get("/untouched")
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.vary


def test_reading_an_empty_session_varies_on_the_cookie_but_sets_none(probe):
    response = probe.test_client().get("/read")
    assert response.get_data(as_text=True) == "nobody"
    assert "Set-Cookie" not in response.headers and "Cookie" in response.vary


def test_a_session_round_trips_and_survives_a_key_rotation(probe):
    client = probe.test_client()
    assert "Set-Cookie" in client.get("/write/ada").headers
    assert client.get("/read").get_data(as_text=True) == "ada"
    probe.config.update(SECRET_KEY="second key", SECRET_KEY_FALLBACKS=["first key"])
    assert client.get("/read").get_data(as_text=True) == "ada"
    probe.config.update(SECRET_KEY="third key", SECRET_KEY_FALLBACKS=[])
    assert client.get("/read").get_data(as_text=True) == "nobody"


def test_a_forged_cookie_is_an_empty_session(probe):
    client = probe.test_client()
    client.set_cookie("session", "eyJuYW1lIjoiZXZlIn0.forged.signature")
    assert client.get("/read").get_data(as_text=True) == "nobody"
