"""Health of the parts the app needs: the database, Redis, and a worker that runs jobs.

Workers prove they are alive by running the periodic `jobs.heartbeat.heartbeat` job, which writes
their name and the time into a Redis sorted set; /healthz wants one younger than
WORKER_HEARTBEAT_MAX_AGE_SECONDS.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import redis
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from credit_app.platform.extensions import db
from credit_app.platform.redis_client import client_for

HEARTBEAT_KEY = "credit_app:worker_heartbeats"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def ops_redis() -> redis.Redis:
    """The Redis client of health checks and metrics: it fails fast, so a Redis outage is
    reported at once and never slows a request down."""
    client = current_app.extensions.get("ops_redis")
    if client is None:
        client = client_for(current_app._get_current_object(), "monitoring")
        current_app.extensions["ops_redis"] = client
    return client


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def record_heartbeat(connection: redis.Redis, name: str, now: float | None = None) -> None:
    """Note that worker `name` ran a job now; forget workers silent for a day."""
    now = time.time() if now is None else now
    pipeline = connection.pipeline()
    pipeline.zadd(HEARTBEAT_KEY, {name: now})
    pipeline.zremrangebyscore(HEARTBEAT_KEY, "-inf", now - 86_400)
    pipeline.execute()


def latest_heartbeat(connection: redis.Redis) -> tuple[str, float] | None:
    """The most recent heartbeat as (worker, unix time), or None."""
    newest = connection.zrevrange(HEARTBEAT_KEY, 0, 0, withscores=True)
    if not newest:
        return None
    name, score = newest[0]
    return name.decode(), score


def check_database() -> Check:
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        return Check("database", False, f"unreachable: {type(exc).__name__}")
    return Check("database", True, "ok")


def check_redis() -> Check:
    try:
        ops_redis().ping()
    except redis.RedisError as exc:
        return Check("redis", False, f"unreachable: {type(exc).__name__}")
    return Check("redis", True, "ok")


def check_worker(max_age: float, now: float | None = None) -> Check:
    now = time.time() if now is None else now
    try:
        newest = latest_heartbeat(ops_redis())
    except redis.RedisError:
        return Check("worker", False, "unknown: Redis is unreachable")
    if newest is None:
        return Check("worker", False, "no worker heartbeat yet")
    name, beat = newest
    age = now - beat
    if age > max_age:
        return Check("worker", False, f"last heartbeat {age:.0f} s ago from {name}")
    return Check("worker", True, f"heartbeat {age:.0f} s ago from {name}")


def check_all(max_age: float) -> list[Check]:
    return [check_database(), check_redis(), check_worker(max_age)]
