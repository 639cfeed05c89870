"""Background jobs on rq: they take ids, run in an app context, and are safe to run twice."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import redis
from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from credit_app.extensions import db
from credit_app.redis_client import get_queue

log = logging.getLogger(__name__)
_job_app: Flask | None = None
_job_app_pid: int | None = None
PENDING_JOBS_KEY = "credit_app.after_commit_jobs"


def enqueue_after_commit(queue_name: str, func: Callable, *args: Any, **kwargs: Any) -> None:
    """Enqueue `func(*args)` on `queue_name` once the current transaction commits.

    A rollback drops it, so a job never sees data that was not committed.
    """
    session = db.session()
    if not session.in_transaction():
        session.begin()
    session.info.setdefault(PENDING_JOBS_KEY, []).append((queue_name, func, args, kwargs))


@event.listens_for(Session, "after_commit")
def _enqueue_pending_jobs(session: Session) -> None:
    """Enqueue what the committed transaction asked for. The data is committed already, so a
    Redis failure is logged, not raised: the periodic recovery jobs pick such work up."""
    pending = session.info.pop(PENDING_JOBS_KEY, [])
    for queue_name, func, args, kwargs in pending:
        try:
            get_queue(queue_name).enqueue(func, *args, **kwargs)
        except redis.RedisError:
            log.exception("could not enqueue %s%r on %s; left for recovery", func.__name__,
                          args, queue_name)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_jobs(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(PENDING_JOBS_KEY, None)


@contextlib.contextmanager
def job_context() -> Iterator[Flask]:
    """An app context for a job: the current one, or the worker's app (made once per process)."""
    global _job_app, _job_app_pid
    if has_app_context():
        yield current_app._get_current_object()
        return
    if _job_app is None:
        from credit_app import create_app

        _job_app = create_app()
        _job_app_pid = os.getpid()
    with _job_app.app_context():
        if _job_app_pid != os.getpid():
            db.engine.dispose(close=False)
            _job_app_pid = os.getpid()
        try:
            yield _job_app
        finally:
            db.session.remove()


def use_app(app: Flask) -> None:
    """Make `app` the one jobs run in (the worker's own, or a test's)."""
    global _job_app, _job_app_pid
    _job_app, _job_app_pid = app, os.getpid()
