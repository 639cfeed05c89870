"""The app's Redis connection and rq queues."""

from __future__ import annotations

import redis
from flask import Flask, current_app
from rq import Queue

# A worker takes from the first non-empty queue in this order: the short maintenance jobs
# (sweeps, heartbeat) first, so a backlog of generations never starves them.
QUEUE_NAMES: tuple[str, ...] = ("maintenance", "webhooks", "generations", "analytics", "default")


def init_redis(app: Flask) -> None:
    app.extensions["redis"] = redis.Redis.from_url(app.config["REDIS_URL"],
                                                   socket_connect_timeout=2,
                                                   health_check_interval=30)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def get_queue(name: str) -> Queue:
    """Raises ValueError for a queue the worker does not listen on."""
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=get_redis())
