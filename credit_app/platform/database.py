"""The database pool's health check, the fixed SQL of the hot path, and its transactions.

The pool pings a pooled connection only when it has sat idle. SQLAlchemy's `pool_pre_ping`
costs a round trip on every checkout, one in eight of a consume's round trips. A connection in
steady use proves itself with every statement, so the ping is kept for connections that have
been idle in the pool for longer than DATABASE_PING_AFTER_IDLE_SECONDS: those are the ones a
PostgreSQL restart, a failover or an idle-connection timeout may have cut. A connection that
was cut while busy fails its next statement instead and is thrown out of the pool (when an ORM
statement meets the failure, SQLAlchemy also recycles every connection older than it), and
that request answers 503 + Retry-After (web/responses.py) like any other outage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
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

from credit_app.platform import after_commit
from credit_app.platform.extensions import db

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
# the ledger write). They go straight to psycopg: SQLAlchemy's per-statement machinery cost
# more than the statements themselves. psycopg prepares each on the server after a few uses.
#
# Where they run:
# - inside `fixed_transaction()`, on that block's own pooled connection and transaction;
# - else on the ORM session's connection, inside its transaction, so that a view mixing ORM
#   work and credit statements (starting a generation) commits them together;
# - `read_fixed` before any transaction has begun: alone, in autocommit, on a connection
#   borrowed from the pool for that one statement.


class ORMInFixedTransaction(RuntimeError):
    """The ORM was used inside `fixed_transaction()`: its statements would run in another
    transaction, on another connection. A programming error."""


@dataclass(slots=True)
class _Link:
    """The psycopg connection fixed SQL runs on, and what SQLAlchemy needs to recognise and
    throw out a connection that broke."""

    driver: psycopg.Connection
    dialect: Any
    dbapi_connection: Any
    invalidate: Callable[[BaseException], None]


@dataclass(slots=True)
class _FixedTransaction:
    """Where a fixed transaction runs and how it ends: `pooled` (a connection of its own,
    committed), `savepoint` (a savepoint on the connection the session is bound to, in the
    tests), or `session` (the ORM session's open transaction, committed through the
    session)."""

    link: _Link
    mode: str


_open_fixed: ContextVar[_FixedTransaction | None] = ContextVar("fixed_transaction", default=None)
FIXED_SAVEPOINT = "fixed_transaction"


@dataclass(slots=True)
class _HeldConnection:
    """The pooled connection a request borrowed for its fixed SQL, once it borrowed one."""

    engine: Engine | None = None
    pooled: Any = None


# Set for a request that keeps the first connection it borrows (keep_connection_for_request).
_held: ContextVar[_HeldConnection | None] = ContextVar("held_connection", default=None)


def keep_connection_for_request() -> None:
    """Before-request hook of the JSON API: the first connection this request borrows for
    fixed SQL (its token read) stays with it, for its fixed transaction too, until the request
    ends (release_request_connection), instead of going back to the pool and being borrowed
    again: one checkout per consume instead of two, about 90 calls less. A request whose ORM
    session holds a connection (a signed-in browser's) borrows none: its fixed transaction
    joins the session's."""
    _held.set(_HeldConnection())


def release_request_connection(error: BaseException | None = None) -> None:
    """Teardown: give back the connection the request kept, if it kept one."""
    held = _held.get()
    if held is None:
        return
    _held.set(None)
    if held.pooled is not None:
        held.pooled.close()


def _borrow_for(engine: Engine) -> tuple[Any, bool]:
    """A pooled connection for fixed SQL, and whether the caller must give it back (False
    when the request keeps it: release_request_connection does). Raises as _borrow."""
    held = _held.get()
    if held is None:
        return _borrow(engine), True
    if held.pooled is None or held.engine is not engine:
        if held.pooled is not None:
            held.pooled.close()
        held.pooled, held.engine = _borrow(engine), engine
    return held.pooled, False


@contextmanager
def fixed_transaction() -> Iterator[None]:
    """Run the block's fixed statements (`execute_fixed`, `read_fixed`, and the services that
    use only them) in one transaction outside the ORM: commit when the block ends, then run
    the after-commit work the block deferred (after_commit.defer); roll back if it raises.

    For views that run nothing but fixed SQL, such as the credit API's consume. The block
    borrows a pooled connection for itself: the ORM session's transaction would cost several
    times the Python of the statements it carries (about 360 calls: begin, commit, close).
    When the session has already begun a transaction (a signed-in browser's request loaded
    its user), the block joins it and commits it through the session instead, so a request
    never holds two connections. The ORM is refused inside the block
    (ORMInFixedTransaction): its statements would run in another transaction.

    Where the session is bound to a connection rather than the engine (the tests' rolled-back
    transaction), the block is a savepoint on that connection, as a view's commit is there.
    Raises what the block raises; sqlalchemy.exc.DBAPIError's subclasses for the driver's
    errors (TimeoutError when the pool has no connection to give); RuntimeError when nested.
    """
    if _open_fixed.get() is not None:
        raise RuntimeError("fixed transactions do not nest")
    session = existing_session()
    pooled, give_back = None, False
    if session is not None and session.in_transaction():
        transaction = _FixedTransaction(_session_link(session), "session")
    else:
        bind = _bind_of(session)
        if isinstance(bind, Engine):
            pooled, give_back = _borrow_for(bind)
            transaction = _FixedTransaction(
                _Link(pooled.driver_connection, bind.dialect, pooled, pooled.invalidate), "pooled"
            )
        else:
            transaction = _FixedTransaction(_connection_link(bind), "savepoint")
    token = _open_fixed.set(transaction)
    try:
        with after_commit.collecting() as pending:
            try:
                if transaction.mode == "savepoint":
                    _run(transaction.link, ((f"SAVEPOINT {FIXED_SAVEPOINT}", {}),))
                yield
                _open_fixed.reset(token)
                token = None
                _end(transaction, session, commit=True)
            except BaseException:
                with suppress(Exception):
                    _end(transaction, session, commit=False)
                after_commit.rolled_back(pending)
                raise
    finally:
        if token is not None:
            _open_fixed.reset(token)
        if pooled is not None and give_back:
            pooled.close()
    after_commit.run_pending(pending)


def _end(transaction: _FixedTransaction, session: Session, commit: bool) -> None:
    """Commit or roll back the fixed transaction. Raises DBAPIError's subclasses."""
    link = transaction.link
    if transaction.mode == "session":
        if commit:
            session.commit()
        else:
            session.rollback()
        return
    if transaction.mode == "savepoint":
        verb = "RELEASE SAVEPOINT" if commit else "ROLLBACK TO SAVEPOINT"
        _run(link, ((f"{verb} {FIXED_SAVEPOINT}", {}),))
        return
    with _translated_errors(link, (("COMMIT" if commit else "ROLLBACK", {}),)):
        if commit:
            link.driver.commit()
        else:
            link.driver.rollback()


def execute_fixed(*statements: tuple[str, dict[str, Any]]) -> list[psycopg.Cursor]:
    """Run `statements` (SQL text and its parameters) in order in the current transaction (a
    fixed transaction's, else the session's, after flushing pending ORM changes as an ORM
    query would) and return one cursor per statement with its rows.

    One round trip each (and one for the BEGIN that psycopg sends before a transaction's
    first statement). psycopg's pipeline mode would send them together, but costs more
    Python than the round trips it saves (BEGIN and one statement: 137 calls pipelined, 65
    as two round trips; gunicorn's CPU per consume fell 6 % without it, measured side by
    side), and on this path the CPU is the limit, not the wait.
    Raises sqlalchemy.exc.DBAPIError's subclass for the driver's error (IntegrityError,
    OperationalError...); a connection that is gone is thrown out of the pool.
    """
    fixed = _open_fixed.get()
    return _run(fixed.link if fixed is not None else _session_link(), statements)


def _run(link: _Link, statements: Sequence[tuple[str, dict[str, Any]]]) -> list[psycopg.Cursor]:
    driver = link.driver
    cursors = []
    with _translated_errors(link, statements):
        for sql, params in statements:
            cursor = driver.cursor()
            cursor.execute(sql, params)
            cursors.append(cursor)
    return cursors


def read_fixed(sql: str, params: dict[str, Any], session: Session | None = None) -> psycopg.Cursor:
    """Run one read-only statement and return its cursor: in the current transaction when
    one has begun (a fixed transaction's, or the session's), else alone.

    Alone means in autocommit, on a connection borrowed from the pool for this statement (or
    the session's connection, when it is bound to one): no BEGIN is sent and no ROLLBACK
    follows, so a bearer-token GET costs one round trip to PostgreSQL and no ORM session.
    What the statement read is then not part of any transaction that follows; callers use it
    only for what needs no lock (who the caller is), and anything that changes a balance
    re-reads it under the row lock.
    `session` defaults to the app's (db.session), if this request has made it: none is made.
    Raises sqlalchemy.exc.DBAPIError's subclass for the driver's error (TimeoutError when the
    pool has no connection to lend).
    """
    fixed = _open_fixed.get()
    if fixed is not None:
        return _run(fixed.link, ((sql, params),))[0]
    session = session or existing_session()
    # in_transaction() is also true when the session holds pending objects: adding begins it
    if session is not None and session.in_transaction():
        return _run(_session_link(session), ((sql, params),))[0]
    bind = _bind_of(session)
    if not isinstance(bind, Engine):
        return _run(_connection_link(bind), ((sql, params),))[0]
    pooled, give_back = _borrow_for(bind)
    try:
        link = _Link(pooled.driver_connection, bind.dialect, pooled, pooled.invalidate)
        return _read_in_autocommit(link, sql, params)
    finally:
        if give_back:
            pooled.close()


def _read_in_autocommit(link: _Link, sql: str, params: dict[str, Any]) -> psycopg.Cursor:
    driver = link.driver
    cursor = driver.cursor()
    with _translated_errors(link, ((sql, params),)):
        if driver.info.transaction_status != TransactionStatus.IDLE:
            cursor.execute(sql, params)
            return cursor
        driver.autocommit = True
        try:
            cursor.execute(sql, params)  # its rows stay in the cursor when the connection goes
        finally:
            _leave_autocommit(link, driver)
    return cursor


def _leave_autocommit(link: _Link, driver: psycopg.Connection) -> None:
    """Put `driver` back in transaction mode; a connection that cannot be (it broke during the
    statement) is thrown out of the pool, so no later transaction runs in autocommit."""
    try:
        driver.autocommit = False
    except psycopg.Error as exc:
        link.invalidate(exc)


def _borrow(engine: Engine) -> Any:
    """A connection from `engine`'s pool (its proxy: `close()` gives it back). Raises
    sqlalchemy.exc.TimeoutError when the pool has none to give within its timeout, and the
    driver's connection errors as SQLAlchemy's DBAPIError subclasses (OperationalError for a
    server that refuses), as `engine.connect()` would."""
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            None,
            None,
            exc,
            engine.dialect.loaded_dbapi.Error,
            dialect=engine.dialect,
            connection_invalidated=engine.dialect.is_disconnect(exc, None, None),
        ) from exc


def existing_session() -> Session | None:
    """The app's ORM session (db.session) if this request or job has made it, else None
    without making one: a bearer-token request runs only fixed SQL, and making the session
    and removing it at teardown cost 50 to 65 calls, more than its token read."""
    registry = db.session.registry
    return registry() if registry.has() else None


def _bind_of(session: Session | None) -> Any:
    """What `session`'s statements run on, or a new session's when there is none yet: the
    Engine, or the Connection the tests bind their sessions to."""
    if session is not None:
        return session.get_bind()
    return db.session.session_factory.kw.get("bind") or db.engine


def _session_link(session: Session | None = None) -> _Link:
    """The session's connection (its transaction begun), pending ORM changes flushed first."""
    session = session or db.session()
    session.flush()
    return _connection_link(session.connection())


def _connection_link(connection: Any) -> _Link:
    """The link of a SQLAlchemy Connection."""
    return _Link(
        connection.connection.driver_connection,
        connection.dialect,
        connection.connection,
        connection.invalidate,
    )


@contextmanager
def _translated_errors(
    link: _Link, statements: Sequence[tuple[str, dict[str, Any]]]
) -> Iterator[None]:
    """Raise psycopg's errors as SQLAlchemy's DBAPIError subclasses, throwing a connection
    that is gone out of the pool."""
    try:
        yield
    except psycopg.Error as exc:
        sql, params = (
            statements[0]
            if len(statements) == 1
            else ("; ".join(sql for sql, _ in statements), None)
        )
        disconnected = link.dialect.is_disconnect(exc, link.dbapi_connection, None)
        if disconnected:
            link.invalidate(exc)
        raise DBAPIError.instance(
            sql, params, exc, psycopg.Error, connection_invalidated=disconnected
        ) from exc


@event.listens_for(Session, "do_orm_execute")
def _refuse_orm_statements(state: Any) -> None:
    if _open_fixed.get() is not None:
        raise ORMInFixedTransaction(f"ORM statement inside a fixed transaction: {state.statement}")


@event.listens_for(Session, "before_flush")
def _refuse_orm_writes(session: Session, flush_context: Any, instances: Any) -> None:
    if _open_fixed.get() is not None:
        raise ORMInFixedTransaction("ORM flush inside a fixed transaction")


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
