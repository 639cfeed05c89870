from datetime import timedelta

from rq import Queue, SimpleWorker

from credit_app.extensions import db
from credit_app.jobs import enqueue_after_commit
from credit_app.jobs.credits import sweep_expired_reservations
from credit_app.jobs.scheduler import claim_slot, enqueue_if_due
from credit_app.redis_client import get_queue, get_redis
from credit_app.services import credits


def test_sweep_job_releases_overdue_holds_and_is_safe_twice(user):
    held = credits.reserve_credit(user.id, "video", "crashed-worker",
                                  timeout=timedelta(seconds=-1))
    db.session.commit()
    assert sweep_expired_reservations() == 1
    assert held.status == "expired"
    assert credits.get_user_credits(user.id).remaining == 6
    assert sweep_expired_reservations() == 0


def test_jobs_are_enqueued_only_after_commit(app):
    queue = get_queue("default")
    queue.empty()
    enqueue_after_commit("default", sweep_expired_reservations)
    assert queue.count == 0
    db.session.rollback()
    db.session.commit()
    assert queue.count == 0
    enqueue_after_commit("default", sweep_expired_reservations)
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
    queue = Queue("default", connection=connection)
    queue.empty()
    now = 1_800_000_000.0
    connection.delete(f"credit_app:periodic:sweep_expired_reservations:{int(now // 30)}")
    assert enqueue_if_due(connection, "default", sweep_expired_reservations, 30, now)
    assert not enqueue_if_due(connection, "default", sweep_expired_reservations, 30, now + 1)
    assert queue.count == 1
    queue.empty()


def test_periodic_thread_enqueues_and_stops(app):
    from credit_app.jobs.scheduler import start_periodic

    connection = get_redis()
    queue = Queue("analytics", connection=connection)
    queue.empty()
    thread = start_periodic(connection, "analytics", _periodic_probe, 3600)
    try:
        deadline = 50
        while queue.count == 0 and deadline:
            thread.join(0.1)
            deadline -= 1
        assert queue.count == 1
    finally:
        thread.stop.set()
        thread.join(5)
        queue.empty()
    assert not thread.is_alive()


def _periodic_probe() -> None:
    """A job the periodic-thread test enqueues; it is never run."""
