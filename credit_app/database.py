"""The database pool's health check, and the fixed SQL of the hot path.

The pool pings a pooled connection only when it has sat idle. SQLAlchemy's `pool_pre_ping`
costs a round trip on every checkout, one in eight of a consume's round trips. A connection in
steady use proves itself with every statement, so the ping is kept for connections that have
been idle in the pool for longer than DATABASE_PING_AFTER_IDLE_SECONDS: those are the ones a
PostgreSQL restart, a failover or an idle-connection timeout may have cut. A connection that
was cut while busy fails its next statement instead and is thrown out of the pool (when an ORM
statement meets the failure, SQLAlchemy also recycles every connection older than it), and
that request answers 503 + Retry-After (errors.py) like any other outage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.errors import _WaitTimeout
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from credit_app.extensions import db

IDLE_SINCE = "idle_since"


def ping_connections_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Make `engine`'s pool ping a connection before handing it out when it was idle for
    `idle_seconds` or more (0 pings every checkout, like pool_pre_ping).

    A failed ping raises DisconnectionError inside the pool, which then discards that
    connection and tries a fresh one (up to three times) before the caller sees an error.
    """
    dialect = engine.dialect

    def mark_idle(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = record.info.get(IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine, "connect", mark_idle)
    event.listen(engine, "checkin", mark_idle)
    event.listen(engine, "checkout", ping_if_idle)


# --- fixed SQL on the hot path ------------------------------------------------------------
#
# A few statements run on every credit request (the bearer token's owner, the balance lock,
# the ledger write). They go straight to psycopg on the session's own connection, inside its
# transaction: SQLAlchemy's per-statement machinery cost more than the statements themselves.
# psycopg prepares each on the server after a few uses.


def execute_fixed(*statements: tuple[str, dict[str, Any]]) -> list[psycopg.Cursor]:
    """Run `statements` (SQL text and its parameters) in order on the session's connection,
    after flushing pending ORM changes (as an ORM query would; free when there are none), and
    return one cursor per statement with its rows.

    They are sent in one round trip (psycopg's pipeline mode) when there are several, or when
    the transaction's BEGIN is still to be sent; each statement still sees what committed
    before it started, as it would alone.
    Raises sqlalchemy.exc.DBAPIError's subclass for the driver's error (IntegrityError,
    OperationalError...); a connection that is gone is thrown out of the pool.
    """
    connection, driver = _session_connection()
    cursors = [driver.cursor() for _ in statements]
    with _translated_errors(connection, statements):
        if len(statements) > 1 or driver.info.transaction_status == TransactionStatus.IDLE:
            with driver.pipeline():
                for cursor, (sql, params) in zip(cursors, statements, strict=True):
                    cursor.execute(sql, params)
        else:
            cursors[0].execute(*statements[0])
    return cursors


def read_fixed(sql: str, params: dict[str, Any],
               session: Session | None = None) -> psycopg.Cursor:
    """Run one read-only statement on the session's connection and return its cursor.

    When the session's transaction has not begun on the server yet (the first statement of a
    request), the statement runs on its own, in autocommit: no BEGIN is sent, and a request
    that writes nothing afterwards ends with no ROLLBACK either, so a bearer-token GET costs
    one round trip to PostgreSQL instead of three. What the statement read is then not part of
    the transaction that may follow; callers use it only for what needs no lock (who the
    caller is), and anything that changes a balance re-reads it under the row lock. Inside a
    begun transaction it simply runs there.
    `session` defaults to the app's (db.session).
    Raises sqlalchemy.exc.DBAPIError's subclass for the driver's error.
    """
    connection, driver = _session_connection(session)
    cursor = driver.cursor()
    with _translated_errors(connection, ((sql, params),)):
        if driver.info.transaction_status != TransactionStatus.IDLE:
            cursor.execute(sql, params)
            return cursor
        driver.autocommit = True
        try:
            cursor.execute(sql, params)
        finally:
            _leave_autocommit(connection, driver)
    return cursor


def _leave_autocommit(connection: Any, driver: psycopg.Connection) -> None:
    """Put `driver` back in transaction mode; a connection that cannot be (it broke during the
    statement) is thrown out of the pool, so no later transaction runs in autocommit."""
    try:
        driver.autocommit = False
    except psycopg.Error as exc:
        connection.invalidate(exc)


def _session_connection(session: Session | None = None) -> tuple[Any, psycopg.Connection]:
    """The session's SQLAlchemy connection and its psycopg connection, pending ORM changes
    flushed first."""
    session = session or db.session()
    session.flush()
    connection = session.connection()
    return connection, connection.connection.driver_connection


@contextmanager
def _translated_errors(connection: Any,
                       statements: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[None]:
    """Raise psycopg's errors as SQLAlchemy's DBAPIError subclasses, throwing a connection
    that is gone out of the pool."""
    try:
        yield
    except psycopg.Error as exc:
        sql, params = statements[0] if len(statements) == 1 else (
            "; ".join(sql for sql, _ in statements), None)
        disconnected = connection.dialect.is_disconnect(exc, connection.connection, None)
        if disconnected:
            connection.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error,
                                  connection_invalidated=disconnected) from exc


# --- waiting for PostgreSQL in a gevent worker --------------------------------------------


class GeventConnection(psycopg.Connection):
    """A psycopg connection that waits for its socket on gevent's event loop directly.

    Under gevent's monkey-patching psycopg falls back to `select.poll()`, which gevent emulates
    by creating, starting and closing its watchers on every call, several times per statement;
    waiting on one libev watcher per wait costs about a third less CPU per round trip (measured
    in bench). Only `Connection.wait` changes: connecting and resetting keep psycopg's own waits.
    """

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        """Run psycopg's I/O generator `gen` to completion, yielding to other greenlets while
        the socket is not ready. Raises what `gen` raises, and psycopg's wait timeout after
        `timeout` seconds."""
        from gevent import Timeout
        from gevent.hub import get_hub

        hub = get_hub()
        watchers: dict[Wait, Any] = {}
        try:
            if timeout is None:
                return self._drive(gen, hub, watchers)
            with Timeout(timeout, _WaitTimeout("wait timeout expired")):
                return self._drive(gen, hub, watchers)
        finally:
            for watcher in watchers.values():
                watcher.close()

    def _drive(self, gen: Any, hub: Any, watchers: dict) -> Any:
        fileno = self.pgconn.socket
        try:
            state = next(gen)
            while True:
                watcher = watchers.get(state)
                if watcher is None:
                    watcher = watchers[state] = hub.loop.io(fileno, _LIBEV_EVENTS[state])
                hub.wait(watcher)
                state = gen.send(_READY_FOR[state])
        except StopIteration as done:
            return done.value


_LIBEV_EVENTS = {Wait.R: 1, Wait.W: 2, Wait.RW: 3}  # libev's EV_READ and EV_WRITE bits
_READY_FOR = {Wait.R: Ready.R, Wait.W: Ready.W, Wait.RW: Ready.RW}


def wait_cooperatively_under_gevent(engine: Engine) -> bool:
    """Give `engine` GeventConnection connections when gevent has patched this process (a
    gunicorn gevent worker); say whether it did. Elsewhere psycopg's own C wait is best."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return False

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: tuple, cparams: dict) -> psycopg.Connection:
        return GeventConnection.connect(*cargs, **cparams)

    return True
