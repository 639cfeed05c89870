"""The pool's idle-connection ping (credit_app/database.py), against the real PostgreSQL."""

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from credit_app.database import ping_connections_after_idle
from credit_app.extensions import db

BACKEND_PID = text("SELECT pg_backend_pid()")


@pytest.fixture
def one_connection_engine(app) -> Iterator[Engine]:
    """An engine of its own with one pooled connection, on the test database."""
    engine = create_engine(db.engine.url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _terminate(backend_pid: int) -> None:
    with db.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend_pid})
        admin.commit()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(BACKEND_PID).scalar_one()


def test_an_idle_connection_cut_by_the_server_is_replaced_before_use(one_connection_engine):
    ping_connections_after_idle(one_connection_engine, idle_seconds=0)
    first = _backend_pid(one_connection_engine)
    _terminate(first)
    second = _backend_pid(one_connection_engine)
    assert second != first


def test_a_connection_in_steady_use_is_not_pinged(one_connection_engine):
    ping_connections_after_idle(one_connection_engine, idle_seconds=3600)
    pings = []
    original = one_connection_engine.dialect.do_ping
    one_connection_engine.dialect.do_ping = lambda conn: pings.append(conn) or original(conn)
    for _ in range(3):
        _backend_pid(one_connection_engine)
    assert pings == []


def test_a_busy_connection_cut_fails_once_and_the_pool_recovers(one_connection_engine):
    ping_connections_after_idle(one_connection_engine, idle_seconds=3600)
    first = _backend_pid(one_connection_engine)
    _terminate(first)
    with pytest.raises(OperationalError):
        _backend_pid(one_connection_engine)
    assert _backend_pid(one_connection_engine) != first

