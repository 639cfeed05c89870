"""The worker's two schedulers, threads of the worker process (so they die with it):

- periodic jobs: every worker ticks; a Redis `SET NX` per time slot makes exactly one of them
  enqueue each periodic job of jobs/registry.py per period, so more workers do not multiply
  the work;
- retries: jobs rq scheduled for a retry (its ScheduledJobRegistry) are moved to their queue
  once due, every second, by whichever worker holds a lock that lives 5 s.

rq's own scheduler is not used: it runs in a forked child that a killed worker leaves
behind, still holding locks, and after a Redis outage it stays dead until its 10-minute
fallback. These threads keep going through an outage (each tick catches the Redis error,
bounded by the client's timeouts), and a killed worker's lock expires within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.utils import current_timestamp

from credit_app.jobs import enqueue_now, registry

log = logging.getLogger(__name__)
RETRY_LOCK_SECONDS = 5
RETRY_TICK_SECONDS = 1.0


def claim_slot(connection: redis.Redis, name: str, interval: int, now: float | None = None) -> bool:
    """True for exactly one caller per `interval`-second slot of `name`."""
    slot = int((now if now is not None else time.time()) // interval)
    return bool(connection.set(f"credit_app:periodic:{name}:{slot}", 1, nx=True, ex=interval * 2))


def enqueue_if_due(
    connection: redis.Redis,
    spec: registry.JobSpec,
    config: Mapping[str, Any],
    now: float | None = None,
) -> bool:
    """Enqueue periodic job `spec` if no worker did for the current slot. Raises RedisError."""
    interval = spec.period_seconds(config)
    if interval is None or not claim_slot(connection, spec.name, interval, now):
        return False
    enqueue_now(spec.name, connection=connection, config=config)
    return True


def enqueue_due_retries(
    connection: redis.Redis, queue_names: Iterable[str], owner: str, now: int | None = None
) -> int:
    """Move the due scheduled jobs of each queue to the queue (under a short lock per queue,
    so two workers never move the same job twice). Returns how many moved. Raises RedisError.
    """
    moved = 0
    for name in queue_names:
        lock = f"credit_app:retry-scheduler:{name}"
        if (
            connection.set(lock, owner, nx=True, ex=RETRY_LOCK_SECONDS) is None
            and connection.get(lock) != owner.encode()
        ):
            continue
        connection.expire(lock, RETRY_LOCK_SECONDS)
        queue = Queue(name, connection=connection)
        scheduled = ScheduledJobRegistry(queue=queue)
        job_ids = scheduled.get_jobs_to_schedule(now if now is not None else current_timestamp())
        if not job_ids:
            continue
        jobs = Job.fetch_many(job_ids, connection=connection)
        with connection.pipeline() as pipeline:
            for job_id, job in zip(job_ids, jobs, strict=True):
                if job is not None:
                    queue._enqueue_job(
                        job, pipeline=pipeline, at_front=job.should_enqueue_at_front()
                    )
                    moved += 1
                scheduled.remove(job_id, pipeline=pipeline)
            pipeline.execute()
    return moved


def _run_forever(
    name: str, tick: Callable[[], None], wait: Callable[[], float], stop: threading.Event
) -> threading.Thread:
    def run() -> None:
        failing = False
        while not stop.is_set():
            try:
                tick()
                if failing:
                    log.info("%s: Redis is back", name)
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    log.warning(
                        "%s: Redis failed (%s: %s); retrying every tick",
                        name,
                        type(exc).__name__,
                        exc,
                    )
                failing = True
            except Exception:
                log.exception("%s failed", name)
            stop.wait(wait())

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def start_schedulers(
    connection: redis.Redis, config: Mapping[str, Any], queue_names: Iterable[str]
) -> threading.Event:
    """Start the periodic and the retry scheduler threads; set the returned event to stop."""
    stop = threading.Event()
    owner = uuid.uuid4().hex
    names = tuple(queue_names)
    _run_forever(
        "retry-scheduler",
        lambda: enqueue_due_retries(connection, names, owner),
        lambda: RETRY_TICK_SECONDS,
        stop,
    )
    for spec in registry.periodic_jobs():
        interval = spec.period_seconds(config)
        _run_forever(
            f"periodic-{spec.name}",
            lambda spec=spec: enqueue_if_due(connection, spec, config),
            lambda interval=interval: max(1.0, interval - time.time() % interval),
            stop,
        )
    return stop
