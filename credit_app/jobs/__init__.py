"""Background jobs on rq: they take ids, run in an app context, and are safe to run twice."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis
from flask import Flask, current_app, has_app_context
from rq import Queue
from rq.job import Job

from credit_app.jobs import registry
from credit_app.platform import after_commit
from credit_app.platform.extensions import db
from credit_app.platform.outages import OUTAGE_ERRORS
from credit_app.platform.redis_client import get_redis

log = logging.getLogger(__name__)

# Errors of an outage rather than of the work (the ones requests answer 503): a job that
# meets one is retried.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = OUTAGE_ERRORS
_job_app: Flask | None = None
_job_app_pid: int | None = None


def enqueue_after_commit(job_name: str, *args: Any, **options: Any) -> None:
    """Enqueue the registered job `job_name` with `args` once the current transaction
    commits; a rollback drops it, so a job never sees data that was not committed.
    `options` (e.g. description) go to rq. Raises KeyError for an undeclared job."""
    registry.job(job_name)
    after_commit.defer("jobs").append((job_name, args, options))


def enqueue_now(
    job_name: str,
    *args: Any,
    connection: redis.Redis | None = None,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> Job:
    """Enqueue the registered job `job_name` with its declared queue, timeout and retries
    (`connection` and `config` default to the current app's).

    Raises KeyError for an undeclared job, redis.RedisError when Redis fails.
    """
    spec = registry.job(job_name)
    queue = Queue(spec.queue, connection=connection or get_redis())
    settings = current_app.config if config is None else config
    return queue.enqueue(spec.func, *args, **{**spec.enqueue_options(settings), **options})


def _enqueue_pending(pending: list[tuple[str, tuple, dict]]) -> None:
    """Enqueue what a committed transaction asked for. Raises redis.RedisError; the work
    stays in the database and the recovery job queues it again."""
    for position, (job_name, args, options) in enumerate(pending):
        try:
            enqueue_now(job_name, *args, **options)
        except redis.RedisError:
            lost = [f"{name}{tuple(job_args)!r}" for name, job_args, _ in pending[position:]]
            log.warning("could not enqueue %s; left for recovery", ", ".join(lost))
            raise


after_commit.register("jobs", list, _enqueue_pending, uses_redis=True)


@contextlib.contextmanager
def job_context() -> Iterator[Flask]:
    """An app context for a job: the current one, or the worker's app (`use_app`).

    Raises RuntimeError when there is neither: the worker (worker.py) builds its app and
    hands it over before it runs a job, and the domain never builds the app itself.
    """
    global _job_app_pid
    if has_app_context():
        yield current_app._get_current_object()
        return
    if _job_app is None:
        raise RuntimeError(
            "no app to run the job in: the worker calls jobs.use_app(app) before it runs jobs"
        )
    with _job_app.app_context():
        if _job_app_pid != os.getpid():
            db.engine.dispose(close=False)
            _job_app_pid = os.getpid()
        try:
            yield _job_app
        finally:
            db.session.remove()


def attempt(
    subject: str,
    work: Callable[[], str],
    record_failure: Callable[[Exception], None],
    *,
    failure: type[Exception] = Exception,
    failed: str = "failed",
    logger: logging.Logger = log,
) -> str:
    """One attempt of a job that rq retries, in the job's app context: commit what `work`
    did and log its outcome (`subject: outcome`). On a `failure`, roll it back, log it
    (`subject failed: error`), note it with `record_failure` (committed) and re-raise, so
    that rq retries. Returns the outcome; raises what `work` raises.
    """
    with job_context():
        try:
            outcome = work()
            db.session.commit()
        except failure as exc:
            db.session.rollback()
            logger.warning("%s %s: %s", subject, failed, exc)
            record_failure(exc)
            db.session.commit()
            raise
    logger.info("%s: %s", subject, outcome)
    return outcome


def preload_for_work_horses(app: Flask) -> None:
    """Load in the worker's own process what jobs would otherwise load lazily, once per job:
    rq runs each job in a work horse forked from this process, which gets what the parent has
    loaded for free (copy-on-write) and loads everything else again, then exits. Measured on
    the generation job: Pillow's image plugins, the provider's module and its compiled
    patterns were most of its CPU, and with S3 storage (production) building the boto3
    client would cost each job about a second more (0.2 s to import boto3, 0.7 s for the
    first client's service models).

    The S3 client built here is the one the work horses inherit (storage caches it per app).
    This process never sends a request with it, so its connection pool is empty when a work
    horse forks and each work horse opens connections of its own.

    Last, everything loaded is frozen out of the garbage collector's reach (`gc.freeze`, as
    Python's documentation advises before forking): a work horse's full collections then walk
    only what its job made, and leave the inherited pages shared. Measured 2026-12-07 in the
    1,000-user browser load: 8.3 ms of rq worker CPU per served request without, 3.8 with.

    Raises ValueError for a bad GENERATION_PROVIDER (as the first job would).
    """
    from PIL import Image

    from credit_app.generation.providers import provider_from_config
    from credit_app.platform.storage import get_storage

    Image.init()
    provider_from_config(app.config)
    with app.app_context():
        get_storage()
    gc.freeze()


def use_app(app: Flask) -> None:
    """Make `app` the one jobs run in (the worker's own, or a test's)."""
    global _job_app, _job_app_pid
    _job_app, _job_app_pid = app, os.getpid()
