"""Test fixtures: a real PostgreSQL and Redis, each test inside a transaction rolled back after.

Test code and the requests it makes share one session (a request reuses the test's app
context), whose commits are savepoints inside that transaction. Fixtures commit what they
set up, so that a request that rolls back on an error keeps the test's data.

The database is TEST_DATABASE_URL when set, else the embedded server's `credit_app_test`
database; Redis is REDIS_URL when set, else the embedded server (database 15).
Tests marked `concurrency` run outside the rolled-back transaction with many real
connections, and delete what they committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import flask_migrate
import pytest
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient
from flask_login.utils import _create_identifier
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from credit_app import create_app
from credit_app.jobs.registry import get_queue
from credit_app.models import User, UserRole
from credit_app.platform import after_commit
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.platform.storage import FilesystemStorage, storage_from_config
from credit_app.services import accounts
from credit_app.services.ledger_audit import audit_ledger
from credit_app.testing.mail_stand_in import Mailbox, start_smtp
from tests.s3_support import (
    create_bucket,
    s3_settings,
    start_s3_stand_in,
    write_self_signed_certificate,
)

PASSWORD = "correct horse battery staple"
CONCURRENCY_DOMAIN = "concurrency.example.com"


class SignedInClient(FlaskClient):
    """A test client that is signed in as `user=`, as flask-login's strong protection expects."""

    def __init__(self, *args, user: User | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if user is not None:
            with self.application.test_request_context(environ_base=self.environ_base):
                identifier = _create_identifier()
            with self.session_transaction() as session:
                session["_user_id"] = user.get_id()
                session["_fresh"] = True
                session["_id"] = identifier

    def open(self, *args, **kwargs):
        """Start each request with an empty `g`, as it would be outside the test's app context."""
        if has_app_context():
            vars(g).clear()
        return super().open(*args, **kwargs)


_SESSION_APPS: list[Flask] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the run, `flask credits audit` on what the tests left committed; a broken
    invariant fails the run."""
    if not _SESSION_APPS or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    app = _SESSION_APPS[0]
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["credits", "audit"])
        db.engine.dispose()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("-", "flask credits audit")
        reporter.write_line(result.output.strip())
    if result.exit_code != 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server (aiosmtpd) for the whole run: its mailbox and port."""
    mailbox = Mailbox()
    controller = start_smtp(mailbox)
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    """What the test SMTP server received, emptied before the test."""
    smtp_server[0].clear()
    return smtp_server[0]


@pytest.fixture(scope="session")
def app(smtp_server: tuple[Mailbox, int]) -> Iterator[Flask]:
    app = create_app(
        "testing",
        overrides={
            "MAIL_URL": f"smtp://127.0.0.1:{smtp_server[1]}",
            "RATELIMIT_AUTH": "10000 per minute",
            "RATELIMIT_SIGNUP": "10000 per minute",
            "RATELIMIT_RESET_ADDRESS": "10000 per minute",
            "RATELIMIT_RESET_CLIENT": "10000 per minute",
            "RATELIMIT_VERIFY_RESEND": "10000 per minute",
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 10, "max_overflow": 80},
            "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
            "SERVER_NAME": "localhost",
            "WTF_CSRF_ENABLED": False,
        },
    )
    app.test_client_class = SignedInClient
    _SESSION_APPS.append(app)
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        flask_migrate.upgrade()
        get_redis().flushdb()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def closed_redis_breaker() -> Iterator[None]:
    """Each test starts with Redis trusted again: a test that made Redis fail after a commit
    must not make the next test skip its enqueues and live updates."""
    after_commit.breaker.reset()
    yield
    after_commit.breaker.reset()


@pytest.fixture(autouse=True)
def db_session(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run the test in a transaction that is rolled back; views' commits become savepoints.

    After each test the ledger audit runs on what the test left (inside its transaction, or
    committed by a concurrency test), so any test that breaks an invariant fails. A test
    marked `no_db` gets neither the transaction nor the app.
    """
    if request.node.get_closest_marker("no_db"):
        yield
        return
    app: Flask = request.getfixturevalue("app")
    check_ledger = not request.node.get_closest_marker("breaks_ledger")
    with app.app_context():
        if request.node.get_closest_marker("concurrency"):
            yield
            db.session.remove()
            if check_ledger:
                _assert_ledger_holds()
            _delete_committed_test_users()
            return
        original = db.session
        connection = db.engine.connect()
        transaction = connection.begin()
        db.session = db._make_scoped_session(
            {
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
                "class_": BoundSession,
            }
        )
        try:
            yield
            if check_ledger and not _failed(request):
                try:
                    db.session.flush()
                except SQLAlchemyError:
                    db.session.rollback()
                _assert_ledger_holds()
        finally:
            db.session.remove()
            db.session = original
            transaction.rollback()
            connection.close()


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed


def _assert_ledger_holds() -> None:
    report = audit_ledger()
    assert report.ok, f"the test left the ledger inconsistent: {report.violations}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class BoundSession(FlaskSession):
    """Flask-SQLAlchemy's session picks the app's engine for every statement, which would
    bypass the test's connection (and commit for real); this one always uses its bind."""

    def get_bind(self, *args, **kwargs):
        return self.bind


# Derived from events: a worker that ran during a committed test (the browser tests run one)
# may have rolled its events up; they are cleared with the test's users.
DERIVED_ANALYTICS_TABLES = (
    "analytics_daily_rollups",
    "analytics_active_days",
    "analytics_daily_active_users",
    "analytics_user_funnels",
)


def _delete_committed_test_users() -> None:
    db.session.remove()
    with db.engine.begin() as connection:
        for table in DERIVED_ANALYTICS_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))
        ids = f"SELECT id FROM users WHERE email LIKE '%@{CONCURRENCY_DOMAIN}'"
        connection.execute(
            text(
                f"DELETE FROM credit_lot_movements WHERE lot_id IN "
                f"(SELECT id FROM credit_lots WHERE user_id IN ({ids}))"
            )
        )
        for table in (
            "credit_lots",
            "credit_refills",
            "analytics_events",
            "credit_transactions",
            "credit_reservations",
            "api_tokens",
            "outbound_emails",
            "recovery_codes",
            "welcome_mailboxes",
        ):
            connection.execute(text(f"DELETE FROM {table} WHERE user_id IN ({ids})"))
        connection.execute(
            text(f"DELETE FROM audit_log WHERE target_user_id IN ({ids}) OR actor_id IN ({ids})")
        )
        connection.execute(text(f"DELETE FROM users WHERE id IN ({ids})"))


@pytest.fixture
def make_user() -> Callable[..., User]:
    """Register a user through the real sign-up service (so with its 6 welcome credits),
    with a verified address unless `verified=False`."""

    def factory(
        email: str | None = None,
        role: UserRole = UserRole.USER,
        plan: str = "free",
        verified: bool = True,
    ) -> User:
        user = accounts.register_user(
            email or f"user-{uuid.uuid4().hex[:10]}@example.com",
            PASSWORD,
            role=role,
            verified=verified,
        )
        user.subscription_status = plan
        db.session.commit()
        return user

    return factory


@pytest.fixture
def user(make_user) -> User:
    return make_user()


@pytest.fixture
def admin(make_user) -> User:
    return make_user(role=UserRole.ADMIN)


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def user_client(app: Flask, user: User):
    """A browser signed in as `user`, sending the same-origin header browsers send."""
    client = app.test_client(user=user)
    client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
    return client


@pytest.fixture
def admin_client(app: Flask, admin: User):
    client = app.test_client(user=admin)
    client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
    return client


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The S3 stand-in (moto's standalone server) for the whole run; yields its URL."""
    process, endpoint = start_s3_stand_in()
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_tls_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A second S3 stand-in that speaks only TLS, with a self-signed certificate (as S3 and
    Bucketeer speak https); yields its URL and the certificate to trust."""
    cert, key = write_self_signed_certificate(tmp_path_factory.mktemp("s3-tls"))
    process, endpoint = start_s3_stand_in((cert, key))
    try:
        yield endpoint, cert
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh private bucket on the S3 stand-in."""
    return create_bucket(s3_endpoint)


@pytest.fixture(params=["filesystem", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path):
    """Each storage backend in turn: a folder, then a fresh bucket on the S3 stand-in."""
    if request.param == "filesystem":
        return FilesystemStorage(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return storage_from_config({**s3_settings(endpoint, bucket), "GENERATION_STORAGE_PATH": ""})


@pytest.fixture
def webhooks_queue(app: Flask):
    """The webhooks queue, emptied before and after the test."""
    queue = get_queue("webhooks")
    queue.empty()
    yield queue
    queue.empty()
