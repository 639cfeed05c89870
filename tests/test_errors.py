"""Outages answer 503 with Retry-After: an exhausted pool, a database that refuses
connections, Redis that does not answer. Never a 500, never a long wait, never a traceback
per request."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask_login.utils import _create_identifier
from sqlalchemy import text

from credit_app import create_app
from credit_app.errors import ServiceUnavailable
from credit_app.platform.extensions import db
from credit_app.platform.outages import OUTAGE_ERRORS
from credit_app.web.responses import _IncidentLog

# These apps need their own engines: the rolled-back test session would route every
# statement through the main app's test connection instead.
pytestmark = pytest.mark.concurrency

BEARER = {"Authorization": "Bearer ca_not_a_real_token_but_it_is_looked_up"}


def _signed_in_browser(app: Flask) -> FlaskClient:
    """A client whose session names a user, so a page loads that user from the database."""
    client = app.test_client()
    with app.test_request_context(environ_base=client.environ_base):
        identifier = _create_identifier()
    with client.session_transaction() as session:
        session.update({"_user_id": "1.0", "_fresh": True, "_id": identifier})
    return client


def _app(**overrides) -> Flask:
    return create_app(
        "testing", overrides={"SERVER_NAME": "localhost", "WTF_CSRF_ENABLED": False, **overrides}
    )


@pytest.fixture(scope="module")
def tiny_pool_app(app) -> Flask:
    """The real app with one pooled connection and a short pool timeout."""
    options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2, "pool_pre_ping": True}
    return _app(SQLALCHEMY_ENGINE_OPTIONS=options)


@pytest.fixture
def exhausted_pool(tiny_pool_app) -> Iterator[Flask]:
    """tiny_pool_app with its only connection checked out by someone else."""
    with tiny_pool_app.app_context():
        held = db.engine.connect()
        try:
            yield tiny_pool_app
        finally:
            held.close()


@pytest.fixture(scope="module")
def database_down_app(app) -> Flask:
    """The real app pointed at a PostgreSQL port nobody listens on."""
    return _app(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:9/none",
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "connect_args": {"connect_timeout": 2}},
    )


def test_an_exhausted_pool_answers_the_api_503_json_with_retry_after(exhausted_pool):
    response = exhausted_pool.test_client().get("/api/user/credits", headers=BEARER)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json == {
        "error": {"code": "service_unavailable", "message": ServiceUnavailable.default_message}
    }


def test_an_exhausted_pool_answers_a_page_with_the_standalone_error_page(exhausted_pool):
    response = _signed_in_browser(exhausted_pool).get("/dashboard")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    page = response.get_data(as_text=True)
    assert "We'll be right back" in page and "Your credits are safe" in page


def test_a_database_that_refuses_connections_gives_503_not_500(database_down_app):
    client = database_down_app.test_client()
    api = client.post("/api/user/credits/consume", headers=BEARER, json={"feature": "interior"})
    assert api.status_code == 503
    assert api.headers["Retry-After"] == "2"
    assert api.json["error"]["code"] == "service_unavailable"
    page = _signed_in_browser(database_down_app).get("/dashboard")
    assert page.status_code == 503
    assert "We'll be right back" in page.get_data(as_text=True)


@pytest.fixture(scope="module")
def no_connections_left_app(app) -> Iterator[Flask]:
    """The real app connecting as a role PostgreSQL refuses with "too many connections", as a
    server whose max_connections are all taken does."""
    role = "credit_app_no_connections_left"
    with app.app_context():
        url = db.engine.url
        with db.engine.begin() as connection:
            connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
            connection.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
    try:
        yield _app(
            SQLALCHEMY_DATABASE_URI=url.set(username=role).render_as_string(hide_password=False)
        )
    finally:
        with app.app_context(), db.engine.begin() as connection:
            connection.execute(text(f"DROP ROLE IF EXISTS {role}"))


def test_a_database_with_no_connections_left_gives_503_not_500(no_connections_left_app):
    response = no_connections_left_app.test_client().post(
        "/api/user/credits/consume", headers=BEARER, json={"feature": "interior"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.json["error"]["code"] == "service_unavailable"


def test_redis_that_does_not_answer_gives_503():
    probe = _app()

    @probe.get("/probe/redis")
    def needs_redis():
        raise redis.TimeoutError("Timeout reading from socket")

    response = probe.test_client().get("/probe/redis", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.json["error"]["code"] == "service_unavailable"


def test_every_outage_kind_is_mapped():
    from sqlalchemy import exc

    for kind in (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, redis.RedisError):
        assert issubclass(kind, OUTAGE_ERRORS)


def test_an_incident_logs_one_traceback_then_one_line_per_request(tiny_pool_app, caplog):
    incidents = _IncidentLog(interval=3600)
    failure = redis.ConnectionError("Connection refused")
    with (
        tiny_pool_app.test_request_context("/api/user/credits"),
        caplog.at_level(logging.WARNING, logger="credit_app.web.responses"),
    ):
        for _ in range(5):
            incidents.report(failure)
    with_traceback = [record for record in caplog.records if record.exc_info]
    assert len(with_traceback) == 1
    assert len(caplog.records) == 5
