"""The pool's idle-connection ping (platform/database.py), against the real PostgreSQL."""

from collections.abc import Iterator

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from credit_app.platform.database import ping_connections_after_idle, read_fixed
from credit_app.platform.extensions import db

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


@pytest.fixture
def own_session(one_connection_engine) -> Iterator[Session]:
    """A session on its own engine, outside the per-test transaction, so that it starts with
    no transaction begun on the server, as a request's session does."""
    session = Session(one_connection_engine)
    yield session
    session.rollback()
    session.close()


def _driver(session: Session):
    return session.connection().connection.driver_connection


def test_a_first_read_begins_no_transaction_and_the_next_statement_does(own_session):
    [row] = read_fixed("SELECT %(n)s::int * 2", {"n": 21}, own_session).fetchall()
    assert row == (42,)
    driver = _driver(own_session)
    assert driver.info.transaction_status == TransactionStatus.IDLE
    assert driver.autocommit is False
    own_session.execute(text("CREATE TEMPORARY TABLE read_fixed_probe (n int)"))
    own_session.execute(text("INSERT INTO read_fixed_probe VALUES (1)"))
    assert driver.info.transaction_status == TransactionStatus.INTRANS
    own_session.rollback()
    with pytest.raises(ProgrammingError):
        own_session.execute(text("SELECT n FROM read_fixed_probe"))


def test_a_request_that_only_reads_sends_neither_begin_nor_rollback(
    own_session, one_connection_engine, tmp_path
):
    """libpq's protocol trace of one read-only request: its one statement, and nothing else,
    on the connection it borrowed (the engine's only one) and gave back."""
    pooled = one_connection_engine.raw_connection()
    driver = pooled.driver_connection
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as out:
        driver.pgconn.trace(out.fileno())
        pooled.close()
        read_fixed("SELECT 1", {}, own_session).fetchall()
        own_session.rollback()
        own_session.close()
        driver.pgconn.untrace()
    sent = trace.read_text()
    assert "SELECT 1" in sent
    assert "BEGIN" not in sent and "ROLLBACK" not in sent
    assert not own_session.in_transaction()


def test_a_read_inside_a_begun_transaction_sees_its_writes(own_session):
    own_session.execute(text("CREATE TEMPORARY TABLE read_fixed_probe (n int)"))
    own_session.execute(text("INSERT INTO read_fixed_probe VALUES (7)"))
    assert read_fixed("SELECT n FROM read_fixed_probe", {}, own_session).fetchall() == [(7,)]
    assert _driver(own_session).info.transaction_status == TransactionStatus.INTRANS


def test_a_failed_first_read_raises_and_leaves_the_connection_transactional(own_session):
    with pytest.raises(DataError):
        read_fixed("SELECT 1 / %(zero)s", {"zero": 0}, own_session)
    own_session.rollback()
    assert _driver(own_session).autocommit is False
    assert read_fixed("SELECT 2", {}, own_session).fetchall() == [(2,)]


def test_a_token_owner_is_read_with_its_balance_and_no_orm_object(user):
    from credit_app.services import accounts

    _, token = accounts.create_api_token(user.id, "owner test")
    db.session.flush()
    db.session.expunge_all()
    owner = accounts.token_owner(token)
    fresh = db.session.execute(
        text(
            "SELECT id, role, credits_remaining, credits_total, subscription_status, "
            "updated_at FROM users WHERE id = :id"
        ),
        {"id": user.id},
    ).one()
    assert owner == accounts.Account(*fresh, has_two_factor=False)
    assert len(db.session.identity_map) == 0


def test_a_revoked_token_finds_nobody(user):
    from credit_app.services import accounts

    created, token = accounts.create_api_token(user.id, "revoked")
    accounts.revoke_api_token(user.id, created.id)
    db.session.flush()
    assert accounts.token_owner(token) is None


def test_fixed_statements_raise_sqlalchemy_errors_and_leave_the_session_usable(app):
    from credit_app.platform.database import execute_fixed

    with pytest.raises(DataError):
        execute_fixed(("SELECT 1", {}), ("SELECT 1 / %(zero)s", {"zero": 0}))
    db.session.rollback()
    [one] = execute_fixed(("SELECT %(n)s::int + 1", {"n": 1}))
    assert one.fetchone() == (2,)


GEVENT_PROBE = """
from gevent import monkey; monkey.patch_all()
import sys, time
import gevent
from sqlalchemy import text
from credit_app import create_app
from credit_app.platform.database import GeventConnection
from credit_app.platform.extensions import db

app = create_app("testing", overrides={"SQLALCHEMY_DATABASE_URI": sys.argv[1]})
finished = []

def query(name, sql):
    with app.app_context():
        with db.engine.connect() as connection:
            assert isinstance(connection.connection.driver_connection, GeventConnection)
            connection.execute(text(sql))
        finished.append(name)

slow = gevent.spawn(query, "slow", "SELECT pg_sleep(1.5)")
gevent.sleep(0.2)
quick = gevent.spawn(query, "quick", "SELECT 1")
gevent.joinall([slow, quick], timeout=30)
print(",".join(finished))
"""


def test_a_gevent_worker_waits_for_postgresql_on_the_event_loop(app, tmp_path):
    """Under gevent's patching a slow statement must not stop other greenlets' statements:
    the quick one finishes first."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(GEVENT_PROBE)
    result = subprocess.run(
        [sys.executable, str(probe), db.engine.url.render_as_string(False)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "quick,slow"


# --- fixed transactions ---------------------------------------------------------------------

INSERT_PROBE = ("INSERT INTO fixed_probe VALUES (%(n)s)", {"n": 1})


@pytest.fixture
def engine_session(one_connection_engine, monkeypatch) -> Iterator[Session]:
    """db.session bound to an engine of its own, as in production (not to the test's
    rolled-back connection): a fixed transaction borrows that engine's one connection."""
    from sqlalchemy.orm import scoped_session, sessionmaker

    with one_connection_engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS fixed_probe (n int)"))
        connection.execute(text("TRUNCATE fixed_probe"))
    session = scoped_session(sessionmaker(bind=one_connection_engine))
    monkeypatch.setattr(db, "session", session)
    yield session
    session.remove()
    with one_connection_engine.begin() as connection:
        connection.execute(text("DROP TABLE fixed_probe"))


@pytest.fixture
def deferred() -> dict[str, list]:
    """What the after-commit work `fixed-probe` ran, and what it undid."""
    from credit_app.platform import after_commit

    seen: dict[str, list] = {"run": [], "undone": []}
    after_commit.register(
        "fixed-probe", list, seen["run"].extend, on_rollback=seen["undone"].extend
    )
    return seen


def _probe_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM fixed_probe")).scalar_one()


def test_a_fixed_transaction_commits_on_a_borrowed_connection_then_runs_deferred_work(
    engine_session, one_connection_engine, deferred
):
    from credit_app.platform import after_commit
    from credit_app.platform.database import execute_fixed, fixed_transaction

    with fixed_transaction():
        execute_fixed(INSERT_PROBE)
        after_commit.defer("fixed-probe").append("published")
        assert deferred["run"] == []
        assert one_connection_engine.pool.checkedout() == 1
    assert deferred == {"run": ["published"], "undone": []}
    assert one_connection_engine.pool.checkedout() == 0
    assert not engine_session().in_transaction()
    assert _probe_rows(one_connection_engine) == 1


def test_an_error_inside_rolls_back_undoes_deferred_work_and_gives_the_connection_back(
    engine_session, one_connection_engine, deferred
):
    from credit_app.platform import after_commit
    from credit_app.platform.database import execute_fixed, fixed_transaction

    with pytest.raises(ZeroDivisionError), fixed_transaction():
        execute_fixed(INSERT_PROBE)
        after_commit.defer("fixed-probe").append("file written")
        raise ZeroDivisionError
    assert deferred == {"run": [], "undone": ["file written"]}
    assert one_connection_engine.pool.checkedout() == 0
    assert _probe_rows(one_connection_engine) == 0


def test_the_orm_is_refused_inside_and_nothing_is_written(engine_session, one_connection_engine):
    from sqlalchemy import select

    from credit_app.models import User
    from credit_app.platform.database import ORMInFixedTransaction, execute_fixed, fixed_transaction

    with pytest.raises(ORMInFixedTransaction), fixed_transaction():
        execute_fixed(INSERT_PROBE)
        engine_session.execute(select(User).limit(1))
    assert _probe_rows(one_connection_engine) == 0
    assert one_connection_engine.pool.checkedout() == 0


def test_it_joins_a_session_transaction_already_begun_and_commits_it(
    engine_session, one_connection_engine, deferred
):
    from credit_app.platform import after_commit
    from credit_app.platform.database import execute_fixed, fixed_transaction

    engine_session.execute(text("SELECT 1"))
    with fixed_transaction():
        execute_fixed(INSERT_PROBE)
        after_commit.defer("fixed-probe").append("published")
    assert not engine_session().in_transaction()
    assert deferred["run"] == ["published"]
    engine_session.remove()
    assert _probe_rows(one_connection_engine) == 1


def test_fixed_transactions_do_not_nest(engine_session):
    from credit_app.platform.database import fixed_transaction

    with pytest.raises(RuntimeError), fixed_transaction(), fixed_transaction():
        pass


def test_in_the_tests_transaction_a_failed_block_rolls_back_to_its_savepoint(user):
    from credit_app.platform.database import execute_fixed, fixed_transaction

    user_id = user.id  # read before: inside, even a lazy reload of `user` would be refused
    with pytest.raises(ZeroDivisionError), fixed_transaction():
        execute_fixed(("UPDATE users SET credits_total = 99 WHERE id = %(id)s", {"id": user_id}))
        raise ZeroDivisionError
    total = db.session.execute(
        text("SELECT credits_total FROM users WHERE id = :id"), {"id": user_id}
    ).scalar_one()
    assert total == 6


def test_a_request_that_keeps_its_connection_borrows_once_and_gives_it_back_at_the_end(
    engine_session, one_connection_engine
):
    from sqlalchemy import event

    from credit_app.platform.database import (
        execute_fixed,
        fixed_transaction,
        keep_connection_for_request,
        release_request_connection,
    )

    checkouts = []
    event.listen(one_connection_engine, "checkout", lambda *args: checkouts.append(args))
    keep_connection_for_request()
    try:
        assert read_fixed("SELECT 1", {}).fetchone() == (1,)
        with fixed_transaction():
            execute_fixed(INSERT_PROBE)
        assert read_fixed("SELECT count(*) FROM fixed_probe", {}).fetchone() == (1,)
        assert len(checkouts) == 1 and one_connection_engine.pool.checkedout() == 1
    finally:
        release_request_connection()
    assert one_connection_engine.pool.checkedout() == 0
    assert read_fixed("SELECT 2", {}).fetchone() == (2,)
    assert one_connection_engine.pool.checkedout() == 0 and len(checkouts) == 2


def test_fixed_sql_makes_no_orm_session_when_the_request_has_none(
    engine_session, one_connection_engine
):
    """A bearer-token request runs only fixed SQL: making db.session and removing it at
    teardown would cost more than its token read, so none is made."""
    from credit_app.platform.database import (
        execute_fixed,
        existing_session,
        fixed_transaction,
        keep_connection_for_request,
        release_request_connection,
    )

    engine_session.remove()
    keep_connection_for_request()
    try:
        assert read_fixed("SELECT 1", {}).fetchone() == (1,)
        with fixed_transaction():
            execute_fixed(INSERT_PROBE)
    finally:
        release_request_connection()
    assert existing_session() is None and not engine_session.registry.has()
    assert _probe_rows(one_connection_engine) == 1
    session = engine_session()
    assert existing_session() is session
