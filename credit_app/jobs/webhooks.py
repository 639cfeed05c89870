"""Webhook jobs on the `webhooks` queue: apply a stored Creem event; sweep lapsed access.

The queue, time limit and retries are declared in jobs/registry.py. One job per event: its
rq job id is derived from the Creem event id, and a delivery of an event whose job is still
queued, scheduled or running adds none (Creem's retries and replays of a stored-but-
unprocessed event, and the recovery job, do not multiply attempts).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from credit_app.billing import subscriptions, webhooks
from credit_app.errors import WebhookEventNotFound
from credit_app.jobs import attempt, enqueue_after_commit, enqueue_now, job_context
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis

log = logging.getLogger(__name__)

LIVE_JOB_STATUSES = frozenset(
    {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
)


def job_id_for(event_id: str) -> str:
    """The rq job id of a Creem event (rq ids allow only letters, digits, - and _)."""
    return "creem-event-" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def has_live_job(event_id: str) -> bool:
    """Whether the event's job is queued, scheduled or running already (False when Redis
    cannot say: the enqueue then fails or logs, and recovery picks the event up)."""
    try:
        job = Job.fetch(job_id_for(event_id), connection=get_redis())
    except (NoSuchJobError, redis.RedisError):
        return False
    return job.get_status(refresh=False) in LIVE_JOB_STATUSES


def _enqueue_unless_live(event_id: str, enqueue: Callable[..., object]) -> bool:
    """Ask `enqueue` for the event's job (one rq job id per event) unless that job is live;
    returns whether it was asked for. Raises what `enqueue` raises."""
    if has_live_job(event_id):
        return False
    enqueue(
        "process_webhook_event",
        event_id,
        job_id=job_id_for(event_id),
        description=f"creem event {event_id}",
    )
    return True


def enqueue_event(event_id: str) -> bool:
    """Process the stored event on the webhooks queue once the current transaction commits,
    unless its job is live already; returns whether a job was asked for."""
    return _enqueue_unless_live(event_id, enqueue_after_commit)


def requeue_event(event_id: str) -> bool:
    """Queue the stored event now (recovery of a lost job), unless its job is live; returns
    whether it was queued. Raises redis.RedisError."""
    return _enqueue_unless_live(event_id, enqueue_now)


def process_webhook_event(event_id: str) -> str:
    """Apply one stored event; safe to run twice (the second run finds it processed).

    A failure rolls the whole attempt back, notes the attempt and the error on the event row,
    and re-raises so that rq retries it (jobs/registry.py). Returns the outcome.
    """

    def apply() -> str:
        try:
            return webhooks.process_event(event_id)
        except WebhookEventNotFound:
            db.session.rollback()
            log.error("webhook event %s is not stored; nothing to do", event_id)
            return "missing"

    return attempt(
        f"webhook event {event_id}",
        apply,
        lambda exc: webhooks.record_failure(event_id, exc),
        logger=log,
    )


def sweep_lapsed_subscriptions() -> int:
    """Downgrade users whose canceled or past-due subscription's access ran out; the count."""
    with job_context():
        downgraded = subscriptions.downgrade_lapsed()
        db.session.commit()
    if downgraded:
        log.info("moved %d users back to the free plan: %s", len(downgraded), downgraded)
    return len(downgraded)
