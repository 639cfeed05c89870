"""One after-commit dispatcher: work a transaction asks for runs only once it has committed.

Code inside a transaction calls `defer(name)` to get the pending bucket of one kind of work
(a list of jobs, the latest live message per user, a flag) in the current transaction and
adds to it. The current transaction is a fixed transaction's (database.fixed_transaction,
which runs the handlers itself after its commit) when one is open, else the ORM session's:
one pair of SQLAlchemy listeners runs every registered handler on the buckets after the
commit, in the order the handlers were registered, and on a rollback drops them (or undoes
them, for a handler with `on_rollback`). A commit with nothing pending costs one dictionary
look-up: this runs on every credit request.

The data is committed already when a handler runs, so a handler never fails the request:
- a Redis error trips a process-wide breaker for BREAKER_SECONDS, during which handlers that
  use Redis are skipped (their work is not lost: the worker's recovery job queues stranded
  work again, and live clients resynchronise when the hub reconnects). It is logged once per
  incident, without a traceback, so a hung Redis costs at most one timeout per process per
  incident instead of one per request and per handler;
- any other error is logged with its traceback and the next handler still runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from credit_app.platform.extensions import db

log = logging.getLogger(__name__)

PENDING_KEY = "credit_app.platform.after_commit"
BREAKER_SECONDS = 5.0


@dataclass(frozen=True)
class Handler:
    name: str
    make_bucket: Callable[[], Any]
    run: Callable[[Any], None] | None
    uses_redis: bool
    on_rollback: Callable[[Any], None] | None


_handlers: dict[str, Handler] = {}


class RedisBreaker:
    """Skips Redis for a few seconds after it failed, so one outage costs one timeout."""

    def __init__(self, seconds: float = BREAKER_SECONDS) -> None:
        self.seconds = seconds
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self, handler: str, exc: Exception) -> None:
        with self._lock:
            first = not self.is_open
            self._open_until = time.monotonic() + self.seconds
        if first:
            log.warning(
                "Redis failed (%s: %s in %s); Redis work that can wait (after "
                "commits, API rate limits) is skipped for %.0f s",
                type(exc).__name__,
                exc,
                handler,
                self.seconds,
            )

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0


breaker = RedisBreaker()


def register(
    name: str,
    make_bucket: Callable[[], Any],
    run: Callable[[Any], None] | None,
    uses_redis: bool = False,
    on_rollback: Callable[[Any], None] | None = None,
) -> None:
    """Declare a kind of deferred work: its empty bucket, what runs it after a commit and,
    optionally, what undoes it after a rollback (a file written for rows that never were).
    Registering a name again replaces its handler."""
    _handlers[name] = Handler(name, make_bucket, run, uses_redis, on_rollback)


# The buckets of the open fixed transaction, if any (database.fixed_transaction).
_fixed_pending: ContextVar[dict[str, Any] | None] = ContextVar("after_commit_fixed", default=None)


def defer(name: str) -> Any:
    """The pending bucket of `name` in the current transaction, created on first use: the
    open fixed transaction's, else the ORM session's (a session transaction is begun if none
    is). Raises KeyError for an unregistered name."""
    handler = _handlers[name]
    pending = _fixed_pending.get()
    if pending is None:
        session = db.session()
        if not session.in_transaction():
            session.begin()
        pending = session.info.get(PENDING_KEY)
        if pending is None:
            pending = session.info[PENDING_KEY] = {}
    bucket = pending.get(name)
    if bucket is None:
        bucket = pending[name] = handler.make_bucket()
    return bucket


@contextmanager
def collecting() -> Iterator[dict[str, Any]]:
    """Collect what a fixed transaction defers into the dictionary yielded; its owner runs
    `run_pending` on it after committing, or `rolled_back` after rolling back."""
    pending: dict[str, Any] = {}
    token = _fixed_pending.set(pending)
    try:
        yield pending
    finally:
        _fixed_pending.reset(token)


def run_pending(pending: dict[str, Any]) -> None:
    """Run the handlers of `pending` (what a committed transaction deferred)."""
    for name, handler in _handlers.items():
        bucket = pending.get(name)
        if not bucket or handler.run is None:
            continue
        if handler.uses_redis and breaker.is_open:
            log.debug("Redis breaker open; %s skipped", name)
            continue
        try:
            handler.run(bucket)
        except redis.RedisError as exc:
            breaker.trip(name, exc)
        except Exception:
            log.exception("after-commit work %s failed", name)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING_KEY, None)
    if pending:
        run_pending(pending)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is not None:
        return
    pending = session.info.pop(PENDING_KEY, None)
    if pending:
        rolled_back(pending)


def rolled_back(pending: dict[str, Any]) -> None:
    """Undo what a rolled-back transaction had deferred, for the handlers that can."""
    for name, handler in _handlers.items():
        bucket = pending.get(name)
        if bucket and handler.on_rollback is not None:
            try:
                handler.on_rollback(bucket)
            except Exception:
                log.exception("undoing %s after a rollback failed", name)
