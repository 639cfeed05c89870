"""The web server as the Procfile runs it (gunicorn with gunicorn.conf.py): one worker keeps
serving while one of its requests waits on the database, and holds many sockets at once."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import text

from credit_app.platform.extensions import db
from credit_app.services import accounts
from tests.test_live import (
    committed_user,
    connect,
    free_port,
    receive_counter,
    session_cookie,
    start_app_process,
)

pytestmark = pytest.mark.concurrency
# A bound on each wait, so that a broken server fails the test instead of hanging it.
PATIENCE_SECONDS = 20
SOCKETS = 30


def server_log(server) -> str:
    """The tail of the log of a server start_app_process started (for a failure message)."""
    import glob
    import os
    import tempfile

    logs = glob.glob(os.path.join(tempfile.gettempdir(), "gunicorn-*.log"))
    newest = max(logs, key=os.path.getmtime, default=None)
    return open(newest).read()[-3000:] if newest else ""


def stop(server) -> None:
    """gunicorn drains open connections for up to its graceful timeout; then it is killed."""
    server.terminate()
    try:
        server.wait(30)
    except Exception:
        server.kill()
        server.wait(10)


def token_for(app, user_id: int) -> str:
    with app.app_context():
        _, token = accounts.create_api_token(user_id, "serving-test")
        db.session.commit()
    return token


def wait_until_a_backend_waits_for_a_lock(connection) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
        ).scalar_one()
        if waiting:
            return
        time.sleep(0.05)
    pytest.fail("the consume never reached the row lock")


def test_a_request_waiting_on_the_database_does_not_stall_the_worker(app):
    """A consume blocked on its user's row lock must leave the worker free for the next
    request (psycopg waits cooperatively under gevent), and finish once the lock goes."""
    blocked_id, _ = committed_user(app)
    other_id, _ = committed_user(app)
    blocked_token, other_token = token_for(app, blocked_id), token_for(app, other_id)
    port = free_port()
    server = start_app_process(port)
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, httpx.Response] = {}

    def consume() -> None:
        answers["blocked"] = httpx.post(
            f"{base}/api/user/credits/consume",
            json={"feature": "video"},
            timeout=PATIENCE_SECONDS,
            headers={"Authorization": f"Bearer {blocked_token}"},
        )

    try:
        with app.app_context(), db.engine.connect() as holder:
            lock = holder.begin()
            holder.execute(
                text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": blocked_id}
            )
            waiting = threading.Thread(target=consume)
            waiting.start()
            wait_until_a_backend_waits_for_a_lock(holder)
            other = httpx.get(
                f"{base}/api/user/credits",
                timeout=PATIENCE_SECONDS,
                headers={"Authorization": f"Bearer {other_token}"},
            )
            assert other.status_code == 200 and other.json()["remaining"] == 6
            assert "blocked" not in answers
            lock.rollback()
        waiting.join(PATIENCE_SECONDS)
        assert answers["blocked"].status_code == 200
        assert answers["blocked"].json()["remaining_credits"] == 5
    finally:
        stop(server)


def test_one_worker_holds_many_sockets_and_still_answers(app):
    user_id, email = committed_user(app)
    port = free_port()
    server = start_app_process(port)
    host = f"127.0.0.1:{port}"
    sockets = []
    try:
        cookie = session_cookie(host, email)
        for _ in range(SOCKETS):
            tab = connect(host, cookie)
            sockets.append(tab)
            assert receive_counter(tab, timeout=PATIENCE_SECONDS) == "6/6", server_log(server)
        token = token_for(app, user_id)
        response = httpx.post(
            f"http://{host}/api/user/credits/consume",
            json={"feature": "video"},
            timeout=PATIENCE_SECONDS,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        assert [receive_counter(tab, timeout=PATIENCE_SECONDS) for tab in sockets] == (
            ["5/6"] * len(sockets)
        )
    finally:
        for tab in sockets:
            tab.close()
        stop(server)


def test_workers_leave_when_the_master_is_killed_so_connections_fail_fast(app):
    """After kill -9 of the gunicorn master its workers notice within seconds and exit, so a
    new connection is refused at once (and the process manager restarts the web process)
    instead of waiting in an orphan's backlog."""
    import os
    import signal

    import psutil

    port = free_port()
    server = start_app_process(port)
    workers = psutil.Process(server.pid).children()
    assert workers
    os.kill(server.pid, signal.SIGKILL)
    server.wait(10)
    _, alive = psutil.wait_procs(workers, timeout=PATIENCE_SECONDS)
    assert alive == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
