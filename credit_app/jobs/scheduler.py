"""A small periodic scheduler that runs inside each worker process.

Every worker ticks; a Redis `SET NX` per time slot makes exactly one of them enqueue the
periodic job for that slot, so running many workers does not multiply the work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from rq import Queue

log = logging.getLogger(__name__)


def claim_slot(connection: redis.Redis, name: str, interval: int, now: float | None = None) -> bool:
    """True for exactly one caller per `interval`-second slot of `name`."""
    slot = int((now if now is not None else time.time()) // interval)
    return bool(connection.set(f"credit_app:periodic:{name}:{slot}", 1, nx=True,
                               ex=interval * 2))


def enqueue_if_due(connection: redis.Redis, queue: str, func: Callable, interval: int,
                   now: float | None = None) -> bool:
    if not claim_slot(connection, func.__name__, interval, now):
        return False
    Queue(queue, connection=connection).enqueue(func, job_timeout=interval * 2)
    return True


def start_periodic(connection: redis.Redis, queue: str, func: Callable,
                   interval: int) -> threading.Thread:
    """Start a daemon thread that enqueues `func` on `queue` every `interval` seconds."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                enqueue_if_due(connection, queue, func, interval)
            except redis.RedisError:
                log.exception("could not enqueue %s", func.__name__)
            stop.wait(max(1.0, interval - time.time() % interval))

    thread = threading.Thread(target=run, name=f"periodic-{func.__name__}", daemon=True)
    thread.stop = stop
    thread.start()
    return thread
