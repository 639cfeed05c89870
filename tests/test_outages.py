"""Faults on real servers the tests start themselves: a Redis that hangs (SIGSTOP), is
killed and comes back, a PostgreSQL that stops under a generation, a worker killed with
kill -9. Each gets the designed behaviour, and the ledger holds."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flask_migrate
import psutil
import pytest
import simple_websocket
from flask import Flask
from PIL import Image
from rq import Queue, SimpleWorker
from rq.job import Job
from sqlalchemy import func, select, update
from werkzeug.serving import make_server

from credit_app import create_app
from credit_app.jobs.recovery import requeue_stranded_work
from credit_app.jobs.scheduler import enqueue_due_retries
from credit_app.models import CreditTransaction, Generation
from credit_app.platform import after_commit
from credit_app.platform.extensions import db
from credit_app.platform.health import HEARTBEAT_KEY
from credit_app.platform.redis_client import make_client
from credit_app.services import accounts, credits
from credit_app.services.ledger_audit import audit_ledger
from credit_app.web.live_hub import HUB_DOWN, RESYNC, CreditHub
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD, SignedInClient
from tests.outages import (
    Finished,
    PostgresServer,
    RedisServer,
    paused,
    private_folder,
    wait_until,
)
from tests.test_live import connect, free_port, receive_counter, session_cookie

pytestmark = pytest.mark.concurrency
PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server_folder() -> Iterator[Path]:
    with private_folder("outage") as folder:
        yield folder


@pytest.fixture
def redis_server(server_folder) -> Iterator[RedisServer]:
    server = RedisServer(server_folder / "redis").start()
    try:
        yield server
    finally:
        server.kill()


def build_app(monkeypatch, redis_server: RedisServer, tmp_path: Path, **overrides) -> Flask:
    """The real app on the test's own Redis (and the test database, or `database_url`)."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    app = create_app(
        "testing",
        overrides={
            "SERVER_NAME": "localhost",
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_KEY_PREFIX": f"outage-{uuid.uuid4().hex[:8]}",
            "GENERATION_STORAGE_PATH": tmp_path / "generations",
            **overrides,
        },
    )
    app.test_client_class = SignedInClient
    return app


@pytest.fixture
def outage_app(app, monkeypatch, redis_server, tmp_path) -> Iterator[Flask]:
    built = build_app(monkeypatch, redis_server, tmp_path)
    yield built
    with built.app_context():
        db.engine.dispose()


def committed_user(app: Flask) -> tuple[int, str]:
    """A committed user with a confirmed address (cleaned up after the test) and an API token
    of theirs."""
    with app.app_context():
        user = accounts.register_user(
            f"outage-{uuid.uuid4().hex[:10]}@{CONCURRENCY_DOMAIN}", PASSWORD, verified=True
        )
        _, token = accounts.create_api_token(user.id, "outage")
        db.session.commit()
        return user.id, token


def png() -> io.BytesIO:
    data = io.BytesIO()
    Image.new("RGB", (160, 120), (180, 160, 140)).save(data, "PNG")
    data.seek(0)
    return data


def signed_in_client(app: Flask, user_id: int) -> SignedInClient:
    """A browser signed in as the user (the user is read now, while the database is up)."""
    with app.app_context():
        from credit_app.models import User

        client = app.test_client(user=db.session.get(User, user_id))
        db.session.remove()
    return client


def start_generation(app: Flask, user_id: int, generation_id: str):
    client = signed_in_client(app, user_id)
    client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
    return client.post(
        "/dashboard/redecorate-room",
        content_type="multipart/form-data",
        headers={"HX-Request": "true"},
        data={
            "room_type": "living_room",
            "style": "modern",
            "prompt": "",
            "generation_id": generation_id,
            "image": (png(), "room.png"),
        },
    )


def generation_of(app: Flask, user_id: int) -> Generation:
    with app.app_context():
        generation = db.session.execute(
            select(Generation).where(Generation.user_id == user_id)
        ).scalar_one()
        db.session.expunge(generation)
        return generation


class TestRedisHangs:
    def test_the_api_answers_and_charges_once_while_redis_is_paused(self, outage_app, redis_server):
        user_id, token = committed_user(outage_app)
        client = outage_app.test_client()
        bearer = {"Authorization": f"Bearer {token}"}
        with paused(redis_server):
            consume = Finished(
                lambda: client.post(
                    "/api/user/credits/consume",
                    headers=bearer,
                    json={"feature": "interior", "generation_id": "during-the-pause"},
                )
            ).result()
            balance = Finished(lambda: client.get("/api/user/credits", headers=bearer)).result()
        assert consume.status_code == 200, consume.get_data(as_text=True)
        assert consume.json["remaining_credits"] == 5
        assert balance.status_code == 200 and balance.json["remaining"] == 5
        assert after_commit.breaker.is_open
        with outage_app.app_context():
            rows = db.session.execute(
                select(func.count())
                .select_from(CreditTransaction)
                .where(CreditTransaction.user_id == user_id)
            ).scalar_one()
        assert rows == 2

    def test_page_limits_keep_counting_in_memory_while_redis_is_paused(
        self, app, monkeypatch, redis_server, tmp_path
    ):
        limited = build_app(monkeypatch, redis_server, tmp_path, RATELIMIT_AUTH="2 per minute")
        client = limited.test_client()

        def sign_in():
            return client.post(
                "/login", data={"email": "nobody@example.com", "password": "not the password"}
            )

        with paused(redis_server):
            statuses = [Finished(sign_in).result().status_code for _ in range(3)]
        assert statuses[2] == 429 and 429 not in statuses[:2]
        with limited.app_context():
            db.engine.dispose()

    def test_api_limits_let_requests_through_while_redis_is_paused(
        self, app, monkeypatch, redis_server, tmp_path
    ):
        limited = build_app(monkeypatch, redis_server, tmp_path, RATELIMIT_CONSUME="2 per minute")
        _, token = committed_user(limited)
        client = limited.test_client()
        bearer = {"Authorization": f"Bearer {token}"}

        def consume(n: int):
            return client.post(
                "/api/user/credits/consume",
                headers=bearer,
                json={"feature": "video", "generation_id": f"limit-{n}"},
            )

        with paused(redis_server):
            statuses = [Finished(lambda n=n: consume(n)).result().status_code for n in range(3)]
        assert statuses == [200, 200, 200]
        # The Redis breaker skips the limits for BREAKER_SECONDS after the outage; once it
        # closes they count again.
        after_commit.breaker.reset()
        assert 429 in [consume(n).status_code for n in range(3, 6)]
        with limited.app_context():
            db.engine.dispose()

    def test_a_generation_started_while_redis_hangs_is_queued_again_later(
        self, outage_app, redis_server
    ):
        user_id, _ = committed_user(outage_app)
        with paused(redis_server):
            response = Finished(lambda: start_generation(outage_app, user_id, "paused")).result()
        assert response.status_code == 200, response.get_data(as_text=True)
        generation = generation_of(outage_app, user_id)
        assert generation.status == "queued"
        queue = Queue("generations", connection=redis_server.client())
        assert queue.count == 0
        with outage_app.app_context():
            db.session.execute(
                update(Generation)
                .where(Generation.id == generation.id)
                .values(created_at=credits.utcnow() - timedelta(minutes=2))
            )
            db.session.commit()
            assert requeue_stranded_work()["generations"] == 1
        assert queue.count == 1
        SimpleWorker([queue], connection=redis_server.client()).work(burst=True)
        assert generation_of(outage_app, user_id).status == "succeeded"
        with outage_app.app_context():
            assert credits.get_user_credits(user_id).remaining == 5


class TestLiveCounter:
    def test_the_hub_goes_down_with_redis_and_resyncs_its_sockets_after(self, redis_server):
        hub = CreditHub(make_client(redis_server.url, "hub"), ping_seconds=0.1, silence_seconds=0.6)
        inbox = hub.subscribe(7)
        try:
            wait_until(lambda: hub.is_live, "the hub never subscribed")
            with paused(redis_server):
                assert inbox.get(timeout=15) is HUB_DOWN
                assert not hub.is_live
            assert inbox.get(timeout=15) is RESYNC
            redis_server.kill()
            assert inbox.get(timeout=15) is HUB_DOWN
            redis_server.start()
            assert inbox.get(timeout=30) is RESYNC
            redis_server.client().publish("credit_app:credits:7", '{"ledger_id": 9}')
            assert inbox.get(timeout=15) == {"ledger_id": 9}
        finally:
            hub.stop()

    def test_sockets_close_while_the_hub_is_down_and_get_the_state_after(
        self, outage_app, redis_server
    ):
        user_id, _ = committed_user(outage_app)
        with outage_app.app_context():
            from credit_app.models import User

            email = db.session.get(User, user_id).email
        hub = CreditHub(make_client(redis_server.url, "hub"), ping_seconds=0.1, silence_seconds=0.6)
        outage_app.extensions["credit_hub"] = hub
        server = make_server("127.0.0.1", free_port(), outage_app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host = f"127.0.0.1:{server.server_port}"
        try:
            cookie = session_cookie(host, email)
            tab = connect(host, cookie)
            assert receive_counter(tab) == "6/6"
            wait_until(lambda: hub.is_live, "the hub never subscribed")
            with paused(redis_server):
                with pytest.raises(simple_websocket.ConnectionClosed) as closed:
                    tab.receive(timeout=15)
                assert closed.value.reason == 1013
                with outage_app.app_context():
                    credits.consume_credit(user_id, "interior")
                    db.session.commit()
                late = connect(host, cookie)
                assert receive_counter(late) == "5/6"
                with pytest.raises(simple_websocket.ConnectionClosed):
                    late.receive(timeout=15)
            wait_until(lambda: hub.is_live, "the hub did not come back", attempts=600)
            after_commit.breaker.reset()
            back = connect(host, cookie)
            assert receive_counter(back) == "5/6"
            with outage_app.app_context():
                credits.consume_credit(user_id, "interior")
                db.session.commit()
            assert receive_counter(back, timeout=10) == "4/6"
            back.close()
        finally:
            server.shutdown()
            hub.stop()


class TestDatabaseStops:
    def test_a_generation_survives_a_database_outage_and_is_charged_once(
        self, app, monkeypatch, redis_server, server_folder, tmp_path
    ):
        postgres = PostgresServer(server_folder / "pg").start()
        try:
            monkeypatch.setenv("TEST_DATABASE_URL", postgres.url)
            own = build_app(monkeypatch, redis_server, tmp_path)
            with own.app_context():
                flask_migrate.upgrade()
            user_id, token = committed_user(own)
            assert start_generation(own, user_id, "outage").status_code == 200
            queue = Queue("generations", connection=redis_server.client())
            (job,) = queue.get_jobs()
            browser = signed_in_client(own, user_id)

            postgres.stop()
            with own.app_context():
                SimpleWorker([queue], connection=redis_server.client()).work(burst=True)
            job.refresh()
            assert job.get_status() == "scheduled" and job.retries_left == 3
            client = own.test_client()
            bearer = {"Authorization": f"Bearer {token}"}
            api = client.get("/api/user/credits", headers=bearer)
            assert api.status_code == 503 and api.headers["Retry-After"]
            assert api.json["error"]["code"] == "service_unavailable"
            page = browser.get("/dashboard")
            assert page.status_code == 503 and "right back" in page.get_data(as_text=True)

            postgres.start()
            far_future = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
            assert (
                enqueue_due_retries(redis_server.client(), ["generations"], "test", now=far_future)
                == 1
            )
            with own.app_context():
                SimpleWorker([queue], connection=redis_server.client()).work(burst=True)
            job.refresh()
            assert job.get_status() == "finished"
            assert generation_of(own, user_id).status == "succeeded"
            with own.app_context():
                assert credits.get_user_credits(user_id).remaining == 5
                report = audit_ledger()
                assert report.ok, report.violations
                db.engine.dispose()
        finally:
            postgres.destroy()


def start_worker(redis_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "REDIS_URL": redis_url,
        "WORKER_HEARTBEAT_INTERVAL_SECONDS": "3600",
        "SWEEP_INTERVAL_SECONDS": "3600",
        "ANALYTICS_ROLLUP_INTERVAL_SECONDS": "3600",
    }
    return subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_killed_worker_leaves_no_scheduler_and_the_next_one_runs_due_retries(redis_server):
    connection = redis_server.client()
    first = start_worker(redis_server.url)
    try:
        wait_until(
            lambda: connection.zcard(HEARTBEAT_KEY) > 0,
            "the worker never ran its heartbeat",
            attempts=600,
        )
        wait_until(
            lambda: not psutil.Process(first.pid).children(),
            "the worker's jobs did not finish",
            attempts=600,
        )
        first.kill()
        first.wait(10)
        # rq's forked scheduler never ran: nothing of it is left to hold a lock.
        assert connection.keys("rq:scheduler-lock:*") == []
        assert connection.keys("rq:scheduler:*") == []
        assert 0 < connection.ttl("credit_app:retry-scheduler:maintenance") <= 5
    finally:
        first.kill()
    connection.delete(HEARTBEAT_KEY)
    queue = Queue("maintenance", connection=connection)
    due = queue.enqueue_at(datetime(2000, 1, 1, tzinfo=UTC), "credit_app.jobs.heartbeat.heartbeat")
    second = start_worker(redis_server.url)
    try:
        wait_until(
            lambda: Job.fetch(due.id, connection=connection).get_status() == "finished",
            "the next worker did not run the due job",
            attempts=600,
        )
    finally:
        second.terminate()
        second.wait(10)
