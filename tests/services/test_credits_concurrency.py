"""Many real connections at once: no double spend, no lost credit, one charge per generation id."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from credit_app import errors
from credit_app.models import CreditReservation, CreditTransaction
from credit_app.platform.extensions import db
from credit_app.services import accounts, credits
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD
from tests.ledger_support import ledger_balance

pytestmark = pytest.mark.concurrency
THREADS = 50


def committed_user(app) -> int:
    with app.app_context():
        user = accounts.register_user(f"{uuid.uuid4().hex[:12]}@{CONCURRENCY_DOMAIN}", PASSWORD)
        db.session.commit()
        return user.id


def run_at_once(app, count: int, operation) -> list[str]:
    """Run `operation(index)` in `count` threads, each with its own session and connection,
    released together by a barrier; each returns 'ok' or the error code it raised."""
    barrier = threading.Barrier(count)

    def attempt(index: int) -> str:
        with app.app_context():
            barrier.wait()
            try:
                operation(index)
                db.session.commit()
                return "ok"
            except errors.DomainError as exc:
                db.session.rollback()
                return exc.code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(attempt, range(count)))


def state(app, user_id: int) -> tuple[int, int, int]:
    with app.app_context():
        remaining = credits.get_user_credits(user_id).remaining
        rows = db.session.scalar(
            select(func.count())
            .select_from(CreditTransaction)
            .where(CreditTransaction.user_id == user_id)
        )
        return remaining, ledger_balance(user_id), rows


def test_fifty_consumers_spend_exactly_six_credits(app):
    user_id = committed_user(app)
    outcomes = run_at_once(app, THREADS, lambda index: credits.consume_credit(user_id, "interior"))
    assert Counter(outcomes) == {"ok": 6, "insufficient_credits": THREADS - 6}
    remaining, ledger_sum, rows = state(app, user_id)
    assert (remaining, ledger_sum) == (0, 0)
    assert rows == 1 + 6


def test_fifty_reservations_hold_exactly_six_credits(app):
    user_id = committed_user(app)
    outcomes = run_at_once(
        app, THREADS, lambda index: credits.reserve_credit(user_id, "video", f"gen-{index}")
    )
    assert Counter(outcomes) == {"ok": 6, "insufficient_credits": THREADS - 6}
    remaining, ledger_sum, rows = state(app, user_id)
    assert (remaining, ledger_sum, rows) == (0, 0, 1 + 6)
    with app.app_context():
        held = db.session.scalars(
            select(CreditReservation.id).where(CreditReservation.user_id == user_id)
        ).all()
    assert len(held) == 6

    outcomes = run_at_once(
        app,
        12,
        lambda index: (
            credits.commit_reservation(held[index % 6])
            if index < 6
            else credits.release_reservation(held[index % 6])
        ),
    )
    with app.app_context():
        statuses = Counter(
            db.session.scalars(
                select(CreditReservation.status).where(CreditReservation.user_id == user_id)
            )
        )
    assert sum(statuses.values()) == 6
    assert statuses["committed"] + statuses["released"] == 6
    remaining, ledger_sum, _ = state(app, user_id)
    assert remaining == ledger_sum == statuses["released"]
    assert outcomes.count("reservation_not_pending") == 6


def test_the_same_generation_id_twenty_times_at_once_charges_once(app):
    user_id = committed_user(app)
    outcomes = run_at_once(
        app, 20, lambda index: credits.consume_credit(user_id, "sketch", "same-gen")
    )
    assert outcomes == ["ok"] * 20
    remaining, ledger_sum, rows = state(app, user_id)
    assert (remaining, ledger_sum, rows) == (5, 5, 2)


def test_the_same_reservation_twenty_times_at_once_holds_once(app):
    user_id = committed_user(app)
    outcomes = run_at_once(
        app, 20, lambda index: credits.reserve_credit(user_id, "video", "same-res")
    )
    assert outcomes == ["ok"] * 20
    remaining, ledger_sum, rows = state(app, user_id)
    assert (remaining, ledger_sum, rows) == (5, 5, 2)


def test_sweepers_racing_commits_resolve_each_hold_exactly_once(app):
    from datetime import timedelta

    user_id = committed_user(app)
    with app.app_context():
        start = credits.utcnow()
        ids = [
            credits.reserve_credit(
                user_id, "interior", f"race-{index}", timeout=timedelta(seconds=1), now=start
            ).id
            for index in range(6)
        ]
        db.session.commit()
    late = start + timedelta(milliseconds=500)
    overdue = start + timedelta(seconds=2)
    outcomes = run_at_once(
        app,
        12,
        lambda index: (
            credits.commit_reservation(ids[index], now=late)
            if index < 6
            else credits.expire_overdue_reservations(now=overdue)
        ),
    )
    with app.app_context():
        statuses = Counter(
            db.session.scalars(
                select(CreditReservation.status).where(CreditReservation.user_id == user_id)
            )
        )
    assert statuses["committed"] + statuses["expired"] == 6
    commit_outcomes = Counter(outcomes[:6])
    assert commit_outcomes["ok"] == statuses["committed"]
    assert commit_outcomes["reservation_expired"] == statuses["expired"]
    assert outcomes[6:] == ["ok"] * 6
    remaining, ledger_sum, rows = state(app, user_id)
    assert remaining == ledger_sum == statuses["expired"]
    assert rows == 1 + 6 + 6
