"""Every subscription lifecycle, delivered in order, reversed and shuffled (with duplicates),
applied by 1 and by 3 workers at once: each ends in the state the newest facts imply.

The deliveries go through the real webhook route (committed, one rq job each); the workers
are real threads, each with its own app context and database connection, taking the jobs
off the real rq queue and running them (as rq's worker would). Ambiguous events are re-read
from the stand-in over HTTP. No run may fail a first try: every event is applied with one
attempt.
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from rq.job import Job
from sqlalchemy import select

from credit_app.models import Subscription, User, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.services import credits
from credit_app.testing.creem import CreemStandIn, create_stand_in_app, serve_stand_in
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD
from tests.creem_support import Clock, delete_stand_in_rows, make_stand_in, post_event, subscribe
from tests.ledger_support import ledger_balance

pytestmark = pytest.mark.concurrency

MONTHLY, YEARLY = "prod_standin_pro_monthly", "prod_standin_pro_yearly"


@dataclass(frozen=True)
class Lifecycle:
    actions: tuple[str, ...]
    status: str
    plan: str
    product: str = MONTHLY
    flag: str | None = None


LIFECYCLES: dict[str, Lifecycle] = {
    "purchase": Lifecycle((), "active", "pro"),
    "renewal": Lifecycle(("renew", "renew"), "active", "pro"),
    "scheduled cancel": Lifecycle(("renew", "cancel-scheduled"), "scheduled_cancel", "pro"),
    "mid-period cancel": Lifecycle(("cancel-immediate",), "canceled", "pro"),
    "scheduled cancel reaching the period end": Lifecycle(
        ("cancel-scheduled", "end-period"), "canceled", "pro"
    ),
    "cancel then resume": Lifecycle(("cancel-scheduled", "resume", "renew"), "active", "pro"),
    "past-due recovery": Lifecycle(("past-due", "renew"), "active", "pro"),
    "expiry": Lifecycle(("past-due", "expire"), "expired", "free"),
    "partial refund": Lifecycle(("partial-refund",), "active", "pro"),
    "full refund": Lifecycle(("renew", "refund"), "active", "free", flag="refund"),
    "dispute": Lifecycle(("partial-refund", "dispute"), "active", "free", flag="dispute"),
    "refund and dispute": Lifecycle(("refund", "dispute"), "active", "free", flag="dispute"),
    "plan switch": Lifecycle(("switch-plan", "renew"), "active", "pro", product=YEARLY),
    "plan switch and back": Lifecycle(("switch-plan", "switch-plan"), "active", "pro"),
}
ORDERS = ("in_order", "reversed", "shuffled")


@pytest.fixture
def served(app: Flask):
    """A stand-in on a clock a day back, served over HTTP; the app points at it; what the run
    committed is deleted afterwards (subscriptions before their users)."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=1))
    stand_in = make_stand_in(app, clock)
    with (
        serve_stand_in(create_stand_in_app(stand_in)) as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setitem(app.config, "CREEM_API_URL", url)
        patch.delitem(app.extensions, "creem_client", raising=False)
        try:
            yield stand_in, clock
        finally:
            delete_stand_in_rows(stand_in)


def committed_user() -> User:
    from credit_app.services import accounts

    user = accounts.register_user(f"life-{uuid.uuid4().hex[:10]}@{CONCURRENCY_DOMAIN}", PASSWORD)
    db.session.commit()
    return user


def deliveries(stand_in: CreemStandIn, order: str, seed: int) -> list:
    events = list(stand_in.events)
    rng = random.Random(seed)
    if order == "reversed":
        events.reverse()
    elif order == "shuffled":
        rng.shuffle(events)
    duplicates = rng.sample(events, k=min(2, len(events)))
    return events + duplicates


def run_workers(app: Flask, workers: int, webhooks_queue) -> list[BaseException]:
    """`workers` threads take the jobs off the rq queue and run them until none is left;
    returns what the jobs raised."""
    jobs: queue.Queue[Job] = queue.Queue()
    for job in webhooks_queue.get_jobs():
        jobs.put(job)
    webhooks_queue.connection.delete(webhooks_queue.key)
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def work() -> None:
        with app.app_context():
            start.wait()
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                try:
                    job.func(*job.args, **job.kwargs)
                except BaseException as exc:
                    errors.append(exc)
            db.session.remove()

    threads = [threading.Thread(target=work, name=f"webhook-worker-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_every_lifecycle_ends_in_the_state_of_the_newest_facts(
    app, client, served, webhooks_queue, name, order, workers
):
    lifecycle = LIFECYCLES[name]
    stand_in, clock = served
    user = committed_user()
    user_id = user.id
    subscription, _events = subscribe(stand_in, user)
    for action in lifecycle.actions:
        clock.advance(minutes=5)
        stand_in.act(subscription.id, action)
    sent = deliveries(stand_in, order, seed=len(name) * 7 + workers)
    for event in sent:
        assert post_event(client, event).status_code == 200
    assert webhooks_queue.count == len(stand_in.events), "not one job per event"

    assert run_workers(app, workers, webhooks_queue) == []

    db.session.remove()
    row = db.session.execute(
        select(Subscription).where(Subscription.creem_subscription_id == subscription.id)
    ).scalar_one()
    truth = stand_in.subscription(subscription.id)
    assert (row.status, row.product_id, row.staff_flag) == (
        lifecycle.status,
        lifecycle.product,
        lifecycle.flag,
    )
    assert row.status == truth.status and row.product_id == truth.product.id
    assert row.current_period_end == truth.current_period_end.replace(
        microsecond=truth.current_period_end.microsecond // 1000 * 1000
    )
    balance = credits.get_user_credits(user_id)
    assert balance.subscription_status == lifecycle.plan
    assert ledger_balance(user_id) == balance.remaining == 6
    events = (
        db.session.execute(
            select(WebhookEvent).where(
                WebhookEvent.event_id.in_([event.id for event in stand_in.events])
            )
        )
        .scalars()
        .all()
    )
    assert len(events) == len(stand_in.events)
    assert all(
        event.processed_at is not None and event.attempts == 1 and event.last_error is None
        for event in events
    ), "a first try failed"
    db.session.remove()
