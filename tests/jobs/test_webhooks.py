"""The webhook job on rq: one job per event however often it is delivered, a failure half-way
is retried without a double effect, the admin re-run, and the sweep. (Every lifecycle in any
order with 1 and 3 workers: test_webhook_lifecycles.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq import SimpleWorker
from sqlalchemy import func, select

from credit_app.billing import subscriptions, webhooks
from credit_app.jobs.registry import job as job_spec
from credit_app.jobs.webhooks import (
    job_id_for,
    process_webhook_event,
    sweep_lapsed_subscriptions,
)
from credit_app.models import CreditTransaction, Subscription, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import audit, credits
from tests.creem_support import Clock, make_stand_in, post_event, served_stand_in, subscribe

pytestmark = pytest.mark.usefixtures("webhooks_queue")


@pytest.fixture
def creem(app, monkeypatch):
    """The stand-in served over HTTP (for re-reads), and the app pointed at it."""
    with served_stand_in(app, monkeypatch) as stand_in:
        yield stand_in


def run_worker(queue) -> None:
    SimpleWorker([queue], connection=get_redis()).work(burst=True)


def plan_changes(user_id: int) -> list[CreditTransaction]:
    return (
        db.session.execute(
            select(CreditTransaction)
            .where(
                CreditTransaction.user_id == user_id,
                CreditTransaction.feature_used == "subscription",
            )
            .order_by(CreditTransaction.id)
        )
        .scalars()
        .all()
    )


def stored(event_id: str) -> WebhookEvent:
    return db.session.execute(
        select(WebhookEvent)
        .where(WebhookEvent.event_id == event_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def subscription_row(subscription_id: str) -> Subscription:
    return db.session.execute(
        select(Subscription)
        .where(Subscription.creem_subscription_id == subscription_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def test_a_delivered_event_is_applied_by_an_rq_worker(client, creem, user, webhooks_queue):
    _sub, events = subscribe(creem, user)
    for event in events:
        assert post_event(client, event).status_code == 200
    assert webhooks_queue.count == 3
    run_worker(webhooks_queue)
    assert credits.get_user_credits(user.id).subscription_status == "pro"
    for event in events:
        row = stored(event.id)
        assert row.processed_at is not None and row.attempts == 1 and row.last_error is None
        assert row.outcome == "applied"
    assert len(plan_changes(user.id)) == 1


def test_the_same_event_ten_times_is_one_job_applied_once(client, creem, user, webhooks_queue):
    _sub, events = subscribe(creem, user)
    paid = events[-1]
    answers = [post_event(client, paid) for _ in range(10)]
    assert [answer.status_code for answer in answers] == [200] * 10
    assert [answer.get_json()["duplicate"] for answer in answers] == [False] + [True] * 9
    assert (
        db.session.execute(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.event_id == paid.id)
        ).scalar_one()
        == 1
    )
    assert webhooks_queue.count == 1
    (job,) = webhooks_queue.get_jobs()
    assert job.id == job_id_for(paid.id) and job.args == (paid.id,)
    run_worker(webhooks_queue)
    assert stored(paid.id).attempts == 1
    assert post_event(client, paid).get_json()["duplicate"] is True
    assert webhooks_queue.count == 0, "a processed event gets no job"
    for _ in range(10):
        assert process_webhook_event(paid.id) == "already_processed"
    assert len(plan_changes(user.id)) == 1
    assert stored(paid.id).attempts == 1


def test_a_replay_after_the_job_ran_and_failed_for_good_gets_a_new_job(
    client, creem, user, webhooks_queue, monkeypatch
):
    _sub, events = subscribe(creem, user)
    post_event(client, events[-1])
    (job,) = webhooks_queue.get_jobs()
    job.retries_left = 0
    job.save()

    def unavailable(*args, **kwargs):
        raise ConnectionError("database restarting")

    monkeypatch.setattr(webhooks, "apply_stored_event", unavailable)
    run_worker(webhooks_queue)
    assert job.get_status(refresh=True) == "failed"
    post_event(client, events[-1])
    assert [queued.id for queued in webhooks_queue.get_jobs()] == [job.id]


def test_a_job_that_fails_half_way_is_retried_without_a_double_effect(
    client, creem, user, monkeypatch
):
    _sub, events = subscribe(creem, user)
    for event in events:
        post_event(client, event)
    real_sync = subscriptions.sync_user_plan

    def crash_after_writing(*args, **kwargs):
        real_sync(*args, **kwargs)
        raise RuntimeError("worker lost its database connection")

    monkeypatch.setattr(subscriptions, "sync_user_plan", crash_after_writing)
    with pytest.raises(RuntimeError):
        process_webhook_event(events[-1].id)
    failed = stored(events[-1].id)
    assert failed.processed_at is None and failed.attempts == 1
    assert failed.last_error == "RuntimeError: worker lost its database connection"
    assert plan_changes(user.id) == []
    assert credits.get_user_credits(user.id).subscription_status == "free"
    assert (
        db.session.execute(
            select(func.count()).select_from(Subscription).where(Subscription.user_id == user.id)
        ).scalar_one()
        == 0
    )

    monkeypatch.setattr(subscriptions, "sync_user_plan", real_sync)
    assert process_webhook_event(events[-1].id) == "applied"
    assert process_webhook_event(events[-1].id) == "already_processed"
    done = stored(events[-1].id)
    assert done.attempts == 2 and done.last_error is None and done.outcome == "applied"
    assert len(plan_changes(user.id)) == 1


def test_rq_schedules_a_retry_with_backoff_when_the_job_fails(
    client, creem, user, webhooks_queue, monkeypatch
):
    _sub, events = subscribe(creem, user)
    post_event(client, events[-1])
    (job,) = webhooks_queue.get_jobs()
    declared = job_spec("process_webhook_event").retry_intervals
    assert job.retries_left == len(declared) == 5 and job.retry_intervals == list(declared)

    def unavailable(*args, **kwargs):
        raise ConnectionError("database restarting")

    monkeypatch.setattr(webhooks, "apply_stored_event", unavailable)
    run_worker(webhooks_queue)
    job.refresh()
    assert job.get_status() == "scheduled" and job.retries_left == 4
    row = stored(events[-1].id)
    assert row.attempts == 1 and "database restarting" in row.last_error
    job.cancel()


def test_an_event_that_is_not_stored_is_not_retried(app):
    assert process_webhook_event("evt_never_stored") == "missing"


class TestCommands:
    def test_rerun_event_applies_a_stored_event_again(self, app, client, creem, user, admin):
        _sub, events = subscribe(creem, user)
        post_event(client, events[-1])
        runner = app.test_cli_runner()
        refused = runner.invoke(
            args=["billing", "rerun-event", events[-1].id, "--actor", user.email]
        )
        assert refused.exit_code != 0 and "not an admin account" in refused.output
        result = runner.invoke(
            args=["billing", "rerun-event", events[-1].id, "--actor", admin.email]
        )
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"{events[-1].id}: applied"
        assert credits.get_user_credits(user.id).subscription_status == "pro"
        again = runner.invoke(
            args=["billing", "rerun-event", events[-1].id, "--actor", admin.email]
        )
        assert again.exit_code == 0 and stored(events[-1].id).attempts == 2
        assert len(plan_changes(user.id)) == 1
        reruns = [
            entry
            for entry in audit.list_entries(action="webhook.rerun").items
            if entry.target == events[-1].id
        ]
        assert len(reruns) == 2 and reruns[0].actor_id == admin.id

    def test_rerun_event_reports_unknown_ids_and_failures(self, app, client, creem, user, admin):
        runner = app.test_cli_runner()
        result = runner.invoke(args=["billing", "rerun-event", "evt_nope", "--actor", admin.email])
        assert result.exit_code != 0 and "No webhook event 'evt_nope'" in result.output
        sub, _events = subscribe(creem, user)
        orphan = stored_orphan(client, creem, sub)
        result = runner.invoke(args=["billing", "rerun-event", orphan, "--actor", admin.email])
        assert result.exit_code != 0 and "failed again" in result.output
        assert "Creem does not know subscription" in stored(orphan).last_error

    def test_flagged_and_clear_flag(self, app, client, creem, user):
        runner = app.test_cli_runner()
        sub, _events = subscribe(creem, user)
        assert sub.id not in runner.invoke(args=["billing", "flagged"]).output
        creem.act(sub.id, "dispute")
        for event in creem.events:
            post_event(client, event)
            process_webhook_event(event.id)
        listed = runner.invoke(args=["billing", "flagged"]).output
        assert sub.id in listed and "dispute" in listed
        result = runner.invoke(args=["billing", "clear-flag", sub.id])
        assert result.exit_code == 0 and "pro plan" in result.output
        missing = runner.invoke(args=["billing", "clear-flag", "sub_nope"])
        assert missing.exit_code != 0 and "No subscription 'sub_nope'" in missing.output


def stored_orphan(client, creem, sub) -> str:
    from tests.creem_support import custom_event

    orphan = custom_event(
        creem,
        sub,
        "subscription.paid",
        "active",
        datetime.now(UTC),
        id="sub_unknown_to_creem",
        metadata={},
        customer={"id": "cust_unknown"},
    )
    post_event(client, orphan)
    return orphan["id"]


def test_the_sweep_job_downgrades_lapsed_subscriptions(app, client, make_user, monkeypatch):
    stand_in = make_stand_in(app)
    user = make_user()
    sub, _events = subscribe(stand_in, user)
    stand_in.act(sub.id, "cancel-scheduled")
    for event in stand_in.events:
        post_event(client, event)
        process_webhook_event(event.id)
    stand_in.close()
    assert credits.get_user_credits(user.id).subscription_status == "pro"
    sweep_lapsed_subscriptions()
    assert credits.get_user_credits(user.id).subscription_status == "pro"
    period_end = subscription_row(sub.id).current_period_end
    monkeypatch.setattr(subscriptions, "utcnow", lambda: period_end + timedelta(seconds=1))
    assert sweep_lapsed_subscriptions() >= 1
    assert credits.get_user_credits(user.id).subscription_status == "free"
    assert subscription_row(sub.id).access_ends_at is None
    assert len(plan_changes(user.id)) == 2


def test_a_cancellation_whose_period_already_ended_downgrades_at_once(app, client, make_user):
    clock = Clock(datetime.now(UTC) - timedelta(days=40))
    stand_in = make_stand_in(app, clock)
    user = make_user()
    sub, _events = subscribe(stand_in, user)
    clock.advance(days=1)
    stand_in.act(sub.id, "cancel-scheduled")
    for event in stand_in.events:
        post_event(client, event)
        process_webhook_event(event.id)
    stand_in.close()
    assert credits.get_user_credits(user.id).subscription_status == "free"
    assert [change.metadata_["to"] for change in plan_changes(user.id)] == ["pro", "free"]


def test_recovery_requeues_a_stranded_event_without_a_second_job(
    client, creem, user, webhooks_queue
):
    from sqlalchemy import update

    from credit_app.jobs.recovery import requeue_stranded_work, stranded_after

    _sub, events = subscribe(creem, user)
    post_event(client, events[-1])
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.event_id == events[-1].id)
        .values(
            received_at=credits.utcnow()
            - 2 * stranded_after(client.application.config)["failed_webhook_event"]
        )
    )
    db.session.commit()
    for _ in range(3):
        requeue_stranded_work()
    assert webhooks_queue.count == 1, "recovery added jobs beside the live one"
    webhooks_queue.empty()
    requeue_stranded_work()
    (job,) = webhooks_queue.get_jobs()
    assert job.id == job_id_for(events[-1].id)
