"""The worker's schedulers: periodic jobs from the registry, and due retries moved to their
queue by one worker at a time."""

from __future__ import annotations

from datetime import UTC, datetime

from rq import Queue
from rq.registry import ScheduledJobRegistry

from credit_app.jobs import registry
from credit_app.jobs.registry import QUEUE_NAMES
from credit_app.jobs.scheduler import RETRY_LOCK_SECONDS, enqueue_due_retries, start_schedulers
from credit_app.platform.redis_client import get_redis
from tests.outages import wait_until

FAR_FUTURE = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())


def test_every_declared_job_is_on_a_queue_the_worker_reads_and_importable(app):
    for spec in registry.JOBS.values():
        assert spec.queue in QUEUE_NAMES
        assert callable(spec.function())
        assert spec.timeout_seconds(app.config) > 0
    assert {spec.name for spec in registry.periodic_jobs()} == {
        "sweep_expired_reservations",
        "sweep_lapsed_subscriptions",
        "requeue_stranded_work",
        "heartbeat",
        "roll_up_analytics",
        "reconcile_with_creem",
        "expire_lapsed_credits",
        "refill_free_credits",
    }


def test_due_retries_move_to_their_queue_once(app):
    connection = get_redis()
    queue = Queue("default", connection=connection)
    queue.empty()
    connection.delete("credit_app:retry-scheduler:default")
    job = queue.enqueue_at(datetime(2030, 1, 1, tzinfo=UTC), "credit_app.jobs.heartbeat.heartbeat")
    assert enqueue_due_retries(connection, ["default"], "worker-a") == 0
    assert enqueue_due_retries(connection, ["default"], "worker-b", now=FAR_FUTURE) == 0
    assert enqueue_due_retries(connection, ["default"], "worker-a", now=FAR_FUTURE) == 1
    assert queue.job_ids == [job.id]
    assert ScheduledJobRegistry(queue=queue).count == 0
    assert enqueue_due_retries(connection, ["default"], "worker-a", now=FAR_FUTURE) == 0
    assert 0 < connection.ttl("credit_app:retry-scheduler:default") <= RETRY_LOCK_SECONDS
    queue.empty()
    connection.delete("credit_app:retry-scheduler:default")


def test_the_scheduler_threads_enqueue_periodic_jobs_and_stop(app):
    connection = get_redis()
    for name in ("maintenance", "analytics"):
        Queue(name, connection=connection).empty()
    for key in connection.keys("credit_app:periodic:*"):
        connection.delete(key)
    stop = start_schedulers(connection, app.config, ["default"])
    maintenance = Queue("maintenance", connection=connection)
    try:
        wait_until(lambda: maintenance.count >= 7, "the periodic jobs were not enqueued")
    finally:
        stop.set()
    names = sorted(job.func_name.rsplit(".", 1)[-1] for job in maintenance.get_jobs())
    assert names == [
        "expire_lapsed_credits",
        "heartbeat",
        "reconcile_with_creem",
        "refill_free_credits",
        "requeue_stranded_work",
        "sweep_expired_reservations",
        "sweep_lapsed_subscriptions",
    ]
    maintenance.empty()
    Queue("analytics", connection=connection).empty()
