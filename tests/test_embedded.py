"""The embedded servers a fresh machine runs on: started once, shared, reused."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from rq import Queue

from credit_app.platform import embedded
from tests.outages import private_folder, wait_until


@pytest.fixture
def instance() -> Iterator[Path]:
    with private_folder("embedded") as folder:
        yield folder


def test_redis_starts_once_and_is_reused(instance):
    url = embedded.ensure_redis(instance, db=3)
    try:
        pid = (instance / "redis" / "redis.pid").read_text()
        client = redis.Redis.from_url(url)
        client.set("probe", "1")
        assert embedded.ensure_redis(instance, db=3) == url
        assert (instance / "redis" / "redis.pid").read_text() == pid
        assert client.get("probe") == b"1"
        assert url.endswith("?db=3")
    finally:
        os.kill(int((instance / "redis" / "redis.pid").read_text()), signal.SIGTERM)


def test_long_instance_paths_get_a_short_socket(tmp_path):
    deep = tmp_path / ("x" * 120)
    assert len(str(embedded._redis_socket_path(deep))) <= embedded.MAX_UNIX_SOCKET_PATH


def test_postgres_starts_creates_the_database_and_is_reused(instance):
    url = embedded.ensure_postgres(instance, "probe_db")
    try:
        assert embedded.ensure_postgres(instance, "probe_db") == url
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("probe_db",)
            version = connection.execute("SHOW server_version_num").fetchone()[0]
            assert int(version) >= 180000
    finally:
        embedded.stop_all(instance)


def test_redis_keeps_its_data_through_kill_9_and_restarts_at_once(instance):
    url = embedded.ensure_redis(instance, db=0)
    pid_file = instance / "redis" / "redis.pid"
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("save") == {"save": "300 1"}
        client.config_set("appendfsync", "always")  # so this test needs no wait for a fsync
        Queue("generations", connection=client).enqueue("credit_app.jobs.heartbeat.heartbeat")
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        socket_path = embedded._redis_socket_path(instance / "redis")
        assert socket_path.exists() and not embedded._redis_answers(socket_path)
        restarted = redis.Redis.from_url(embedded.ensure_redis(instance, db=0))
        assert Queue("generations", connection=restarted).count == 1
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_a_stale_socket_probe_tries_once(tmp_path):
    import socket

    path = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()
    calls = []
    original = redis.Redis.ping

    def counting_ping(self, *args, **kwargs):
        calls.append(self.get_connection_kwargs().get("retry"))
        return original(self, *args, **kwargs)

    redis.Redis.ping = counting_ping
    try:
        assert embedded._redis_answers(path) is False
    finally:
        redis.Redis.ping = original
    assert len(calls) == 1 and calls[0].get_retries() == 0


def test_a_dead_or_zombie_postmaster_is_not_taken_for_running(tmp_path):
    pgdata = tmp_path / "pg"
    pgdata.mkdir()
    pid_file = pgdata / "postmaster.pid"
    zombie = subprocess.Popen(["true"])
    psutil.Process(zombie.pid)  # not reaped: a zombie until wait()
    wait_until(
        lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE,
        "the child did not become a zombie",
    )
    try:
        pid_file.write_text(f"{zombie.pid}\n{pgdata}\n")
        assert not embedded.postmaster_is_alive(zombie.pid)
        assert embedded.forget_dead_postmaster(pgdata) and not pid_file.exists()
    finally:
        zombie.wait()
    pid_file.write_text(f"{os.getpid()}\n{pgdata}\n")  # a live process that is not PostgreSQL
    assert embedded.forget_dead_postmaster(pgdata)
    assert not embedded.forget_dead_postmaster(pgdata)


def test_postgres_restarts_right_after_kill_9(instance):
    url = embedded.ensure_postgres(instance, "probe_db")
    try:
        pid = int((instance / "postgres" / "postmaster.pid").read_text().split("\n")[0])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not embedded.postmaster_is_alive(pid), "the postmaster survived")
        assert embedded.ensure_postgres(instance, "probe_db") == url
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        embedded.stop_all(instance)
