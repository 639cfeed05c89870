"""The embedded servers a fresh machine runs on: started once, shared, reused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest
import redis

from credit_app import embedded


@pytest.fixture
def instance(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("inst")


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
