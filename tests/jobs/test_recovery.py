"""Work whose enqueue was lost is found and queued again; a lost enqueue never fails a request."""

from datetime import timedelta

import pytest
import redis
from rq import SimpleWorker
from sqlalchemy import update

from credit_app.jobs import enqueue_after_commit
from credit_app.jobs.recovery import MAX_MAIL_ATTEMPTS, requeue_stranded_work, stranded_after
from credit_app.jobs.registry import get_queue
from credit_app.models import CreditReservation, Generation, OutboundEmail
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import credits, mail
from tests.blueprints.test_generations import only_generation, start


def set_columns(model: type, row_id: int, **values: object) -> None:
    """Set columns of one row of `model` behind the app's back (to age it), and commit."""
    db.session.execute(update(model).where(model.id == row_id).values(**values))
    db.session.commit()


@pytest.fixture(autouse=True)
def empty_queues():
    for name in ("generations", "webhooks", "maintenance", "default"):
        get_queue(name).empty()
    yield
    for name in ("generations", "webhooks", "maintenance", "default"):
        get_queue(name).empty()


def test_a_stranded_generation_is_queued_again(user_client, user):
    start(user_client, "interior")
    generation = only_generation(user)
    get_queue("generations").empty()
    assert requeue_stranded_work() == {"webhook_events": 0, "generations": 0, "emails": 0}
    set_columns(Generation, generation.id, created_at=credits.utcnow() - timedelta(seconds=61))
    assert requeue_stranded_work()["generations"] == 1
    assert get_queue("generations").jobs[0].args == (generation.id,)


def test_a_resubmitted_form_queues_a_waiting_generation_again(user_client, user):
    start(user_client, "interior", generation_id="again")
    get_queue("generations").empty()
    start(user_client, "interior", generation_id="again")
    assert get_queue("generations").count == 1
    assert credits.get_user_credits(user.id).remaining == 5


def test_a_failed_enqueue_is_logged_not_raised(app, user, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr("rq.Queue.enqueue", refuse)
    enqueue_after_commit("sweep_expired_reservations")
    db.session.commit()
    assert "could not enqueue sweep_expired_reservations(); left for recovery" in caplog.text


def test_stranded_limits_come_from_the_registry_and_the_hold(app):
    limits = stranded_after(app.config)
    assert limits["queued_generation"] == timedelta(seconds=60)
    assert limits["running_generation"] == timedelta(
        seconds=app.config["GENERATION_JOB_TIMEOUT_SECONDS"] + 1
    )
    short_hold = {
        **app.config,
        "RESERVATION_TIMEOUT_SECONDS": 120,
        "GENERATION_JOB_TIMEOUT_SECONDS": 60,
    }
    assert stranded_after(short_hold)["queued_generation"] == timedelta(seconds=30)
    assert stranded_after(short_hold)["failed_webhook_event"] > timedelta(minutes=21)


def test_a_generation_waiting_under_a_short_hold_is_recovered_before_it_expires(
    app, user_client, user, monkeypatch
):
    monkeypatch.setitem(app.config, "RESERVATION_TIMEOUT_SECONDS", 120)
    monkeypatch.setitem(app.config, "GENERATION_JOB_TIMEOUT_SECONDS", 60)
    start(user_client, "interior")
    generation = only_generation(user)
    get_queue("generations").empty()
    set_columns(Generation, generation.id, created_at=credits.utcnow() - timedelta(seconds=31))
    assert requeue_stranded_work()["generations"] == 1


def test_a_generation_whose_worker_died_is_queued_again_while_its_hold_lasts(
    app, user_client, user
):
    start(user_client, "interior")
    generation = only_generation(user)
    get_queue("generations").empty()
    running_since = credits.utcnow() - timedelta(
        seconds=app.config["GENERATION_JOB_TIMEOUT_SECONDS"] + 5
    )
    set_columns(
        Generation,
        generation.id,
        status="running",
        started_at=running_since,
        claimed_by="killed-job",
    )
    assert requeue_stranded_work()["generations"] == 1
    SimpleWorker([get_queue("generations")], connection=get_redis()).work(burst=True)
    db.session.refresh(generation)
    assert generation.status == "succeeded"
    assert credits.get_user_credits(user.id).remaining == 5


def test_a_generation_whose_hold_expired_is_left_to_the_sweeper(app, user_client, user):
    start(user_client, "interior")
    generation = only_generation(user)
    get_queue("generations").empty()
    set_columns(Generation, generation.id, created_at=credits.utcnow() - timedelta(hours=1))
    set_columns(
        CreditReservation,
        generation.reservation_id,
        expires_at=credits.utcnow() - timedelta(seconds=1),
    )
    assert requeue_stranded_work()["generations"] == 0


def test_a_stranded_email_is_queued_again_until_its_attempts_run_out(app, user):
    email_id = mail.queue_email(user.email, "password_changed", user_id=user.id)
    db.session.commit()
    get_queue("default").empty()
    assert requeue_stranded_work()["emails"] == 0
    waited = stranded_after(app.config)["new_email"] + timedelta(seconds=1)
    set_columns(OutboundEmail, email_id, created_at=credits.utcnow() - waited)
    assert requeue_stranded_work()["emails"] == 1
    assert get_queue("default").jobs[0].args == (email_id,)
    set_columns(OutboundEmail, email_id, attempts=1)
    assert requeue_stranded_work()["emails"] == 0, "a failed email waits out its retries"
    failed_long_ago = stranded_after(app.config)["failed_email"] + timedelta(seconds=1)
    set_columns(OutboundEmail, email_id, created_at=credits.utcnow() - failed_long_ago)
    assert requeue_stranded_work()["emails"] == 1
    set_columns(OutboundEmail, email_id, attempts=MAX_MAIL_ATTEMPTS)
    assert requeue_stranded_work()["emails"] == 0
