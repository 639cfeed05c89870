from datetime import timedelta

from rq import Queue, SimpleWorker

from credit_app.jobs import enqueue_after_commit
from credit_app.jobs.credits import sweep_expired_reservations
from credit_app.jobs.registry import get_queue
from credit_app.jobs.registry import job as job_spec
from credit_app.jobs.scheduler import claim_slot, enqueue_if_due
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import credits


def test_sweep_job_releases_overdue_holds_and_is_safe_twice(user):
    held = credits.reserve_credit(user.id, "video", "crashed-worker", timeout=timedelta(seconds=-1))
    db.session.commit()
    assert sweep_expired_reservations() == 1
    assert held.status == "expired"
    assert credits.get_user_credits(user.id).remaining == 6
    assert sweep_expired_reservations() == 0


def test_jobs_are_enqueued_only_after_commit(app):
    queue = get_queue("maintenance")
    queue.empty()
    enqueue_after_commit("sweep_expired_reservations")
    assert queue.count == 0
    db.session.rollback()
    db.session.commit()
    assert queue.count == 0
    enqueue_after_commit("sweep_expired_reservations")
    db.session.commit()
    assert queue.count == 1
    queue.empty()


def test_an_rq_worker_runs_the_sweep(app, user):
    credits.reserve_credit(user.id, "video", "stale", timeout=timedelta(seconds=-1))
    db.session.commit()
    queue = get_queue("default")
    queue.empty()
    job = queue.enqueue(sweep_expired_reservations)
    SimpleWorker([queue], connection=get_redis()).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value() == 1
    assert credits.get_user_credits(user.id).remaining == 6


def test_periodic_slot_is_claimed_once_across_workers(app):
    connection = get_redis()
    now = 1_700_000_000.0
    connection.delete(f"credit_app:periodic:probe:{int(now // 60)}")
    assert claim_slot(connection, "probe", 60, now)
    assert not claim_slot(connection, "probe", 60, now + 5)


def test_enqueue_if_due_enqueues_once_per_slot(app):
    connection = get_redis()
    queue = Queue("maintenance", connection=connection)
    queue.empty()
    now = 1_800_000_000.0
    spec = job_spec("sweep_expired_reservations")
    interval = spec.period_seconds(app.config)
    connection.delete(f"credit_app:periodic:sweep_expired_reservations:{int(now // interval)}")
    assert enqueue_if_due(connection, spec, app.config, now)
    assert not enqueue_if_due(connection, spec, app.config, now + 1)
    assert queue.count == 1
    assert queue.jobs[0].func_name == spec.func
    assert queue.jobs[0].timeout == spec.timeout_seconds(app.config)
    queue.empty()
