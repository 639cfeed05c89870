"""The one after-commit dispatcher: work runs after the commit, never after a rollback, a
failing handler never fails the request, and a Redis failure trips the breaker once."""

from __future__ import annotations

import logging

import pytest
import redis

from credit_app.platform import after_commit
from credit_app.platform.extensions import db


@pytest.fixture
def recorded():
    calls: dict[str, list] = {"run": [], "undo": []}
    after_commit.register("probe", list, calls["run"].append, on_rollback=calls["undo"].append)
    yield calls
    after_commit._handlers.pop("probe", None)


def test_runs_after_commit_with_everything_the_transaction_deferred(recorded):
    after_commit.defer("probe").append(1)
    after_commit.defer("probe").append(2)
    assert recorded["run"] == []
    db.session.commit()
    assert recorded["run"] == [[1, 2]]
    db.session.commit()
    assert recorded["run"] == [[1, 2]]


def test_a_rollback_drops_it_or_undoes_it(recorded):
    after_commit.defer("probe").append("written")
    db.session.rollback()
    db.session.commit()
    assert recorded == {"run": [], "undo": [["written"]]}


def test_an_unknown_kind_of_work_is_refused():
    with pytest.raises(KeyError):
        after_commit.defer("no-such-work")


def test_a_redis_failure_trips_the_breaker_once_and_skips_redis_work(caplog):
    calls = []

    def fails(bucket):
        calls.append(bucket)
        raise redis.TimeoutError("Timeout reading from socket")

    after_commit.register("redis-probe", list, fails, uses_redis=True)
    try:
        with caplog.at_level(logging.WARNING, logger="credit_app.platform.after_commit"):
            for _ in range(3):
                after_commit.defer("redis-probe").append("job")
                db.session.commit()
        assert len(calls) == 1
        assert after_commit.breaker.is_open
        warnings = [record for record in caplog.records if "Redis failed" in record.message]
        assert len(warnings) == 1 and warnings[0].exc_info is None
    finally:
        after_commit._handlers.pop("redis-probe", None)


def test_any_other_failure_is_logged_and_the_next_handler_runs(recorded, caplog):
    def breaks(bucket):
        raise RuntimeError("bug")

    after_commit.register("broken", list, breaks)
    try:
        after_commit.defer("broken").append(1)
        after_commit.defer("probe").append(1)
        db.session.commit()
    finally:
        after_commit._handlers.pop("broken", None)
    assert recorded["run"] == [[1]]
    assert "after-commit work broken failed" in caplog.text


def test_one_listener_pair_for_every_kind_of_work():
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    assert event.contains(Session, "after_commit", after_commit._after_commit)
    assert set(after_commit._handlers) >= {"jobs", "live", "rollout", "uploads"}
    for module in ("credit_app.jobs", "credit_app.services.live", "credit_app.services.rollout"):
        source = __import__(module, fromlist=["_"]).__file__
        with open(source) as handle:
            assert "listens_for" not in handle.read()
