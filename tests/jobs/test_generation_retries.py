"""Generations retry on transient database and Redis errors (and only those), and a claim
refuses a hold that has ended or expired."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy.exc
from rq import SimpleWorker
from sqlalchemy import update

from credit_app.jobs.registry import get_queue
from credit_app.jobs.registry import job as job_spec
from credit_app.models import CreditReservation, Generation
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import credits, generations
from tests.blueprints.test_generations import only_generation, start, storage

pytestmark = pytest.mark.usefixtures(storage.__name__)


def database_blip(*args, **kwargs):
    raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))


def run_queued():
    SimpleWorker([get_queue("generations")], connection=get_redis()).work(burst=True)


def test_the_generation_job_is_enqueued_with_the_registry_s_retries(user_client, user):
    start(user_client, "interior")
    (job,) = get_queue("generations").get_jobs()
    spec = job_spec("run_generation")
    assert job.retries_left == len(spec.retry_intervals)
    assert job.retry_intervals == list(spec.retry_intervals)
    assert job.func_name == spec.func


def test_a_database_blip_at_claim_time_is_retried_not_failed(user_client, user, monkeypatch):
    start(user_client, "interior")
    (job,) = get_queue("generations").get_jobs()
    real_claim = generations.claim_generation
    monkeypatch.setattr(generations, "claim_generation", database_blip)
    run_queued()
    job.refresh()
    assert job.get_status() == "scheduled"
    assert only_generation(user).status == "queued"
    monkeypatch.setattr(generations, "claim_generation", real_claim)
    get_queue("generations").enqueue_job(job)
    run_queued()
    db.session.refresh(only_generation(user))
    assert only_generation(user).status == "succeeded"
    assert credits.get_user_credits(user.id).remaining == 5


def test_a_blip_after_the_claim_is_retried_by_the_same_job(user_client, user, monkeypatch):
    start(user_client, "interior")
    (job,) = get_queue("generations").get_jobs()
    real_complete = generations.complete_generation
    monkeypatch.setattr(generations, "complete_generation", database_blip)
    run_queued()
    job.refresh()
    assert job.get_status() == "scheduled"
    generation = only_generation(user)
    assert (generation.status, generation.claimed_by) == ("running", job.id)
    monkeypatch.setattr(generations, "complete_generation", real_complete)
    get_queue("generations").enqueue_job(job)
    run_queued()
    db.session.refresh(generation)
    assert generation.status == "succeeded" and generation.attempts == 2
    assert credits.get_user_credits(user.id).remaining == 5


def test_another_job_cannot_take_a_running_generation(user_client, user):
    start(user_client, "interior")
    generation = only_generation(user)
    assert generations.claim_generation(generation.id, "job-a") is not None
    db.session.commit()
    assert generations.claim_generation(generation.id, "job-b") is None
    assert generations.claim_generation(generation.id, "job-a") is not None
    later = credits.utcnow() + timedelta(seconds=400)
    assert (
        generations.claim_generation(
            generation.id, "job-b", stale_after=timedelta(seconds=301), now=later
        )
        is not None
    )


def test_a_claim_refuses_an_expired_hold(user_client, user):
    start(user_client, "interior")
    generation = only_generation(user)
    db.session.execute(
        update(CreditReservation)
        .where(CreditReservation.id == generation.reservation_id)
        .values(expires_at=credits.utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert generations.claim_generation(generation.id, "job-a") is None
    assert only_generation(user).status == "queued"


def test_a_claim_refuses_a_released_hold(user_client, user):
    start(user_client, "interior")
    generation = only_generation(user)
    credits.release_reservation(generation.reservation_id)
    db.session.commit()
    assert generations.claim_generation(generation.id, "job-a") is None


def test_a_provider_bug_fails_the_generation_without_a_retry(user_client, user, monkeypatch):
    from credit_app.generation import local

    def broken(self, request):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(local.LocalProvider, "generate", broken)
    start(user_client, "interior")
    (job,) = get_queue("generations").get_jobs()
    run_queued()
    job.refresh()
    assert job.get_status() == "finished"
    assert only_generation(user).status == "failed"
    assert credits.get_user_credits(user.id).remaining == 6
    assert db.session.get(Generation, only_generation(user).id).error_message
