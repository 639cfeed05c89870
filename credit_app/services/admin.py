"""What the admin pages do and show beyond the credit API: re-run a webhook event (audited
with the admin's id in the same transaction; credit changes are audited through
`ledger_observers`), disable or enable an account's sign-in, and the lists of webhook
events, failed generations and rq queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis
from rq import Queue
from rq.job import Job
from rq.results import Result
from sqlalchemy import select

from credit_app.billing import webhooks
from credit_app.errors import ValidationFailed, WebhookEventNotFound
from credit_app.jobs.registry import QUEUE_NAMES
from credit_app.jobs.webhooks import enqueue_event
from credit_app.models import (
    Generation,
    GenerationStatus,
    User,
    WebhookEvent,
)
from credit_app.platform.extensions import db
from credit_app.services import audit, credits
from credit_app.services.credits import utcnow
from credit_app.services.paging import Page, newest_first


def rerun_webhook_event(event_id: str, actor_id: int) -> WebhookEvent:
    """Mark a stored webhook event unprocessed and queue it again once the caller commits.

    Raises WebhookEventNotFound.
    """
    before = db.session.execute(
        select(WebhookEvent).where(WebhookEvent.event_id == event_id)
    ).scalar_one_or_none()
    previous = (
        {"outcome": before.outcome, "attempts": before.attempts, "last_error": before.last_error}
        if before is not None
        else {}
    )
    event = webhooks.reset_event(event_id)
    audit.record(
        actor_id,
        "webhook.rerun",
        target=event_id,
        details={"event_type": event.event_type, "previous": previous},
    )
    enqueue_event(event_id)
    return event


WEBHOOK_FILTERS: tuple[str, ...] = ("all", "pending", "failed", "processed")
PAGE_SIZE = 50


def webhook_status(event: WebhookEvent) -> str:
    """processed, failed (tried, not processed) or pending (never tried)."""
    if event.processed_at is not None:
        return "processed"
    return "failed" if event.attempts > 0 else "pending"


def list_webhook_events(
    status: str = "all", before: int | None = None, limit: int = PAGE_SIZE
) -> Page[WebhookEvent]:
    """Stored webhook events, newest first. Raises ValidationFailed for an unknown filter."""
    if status not in WEBHOOK_FILTERS:
        raise ValidationFailed(f"Filter by one of: {', '.join(WEBHOOK_FILTERS)}.", field="status")
    query = select(WebhookEvent)
    if status == "processed":
        query = query.where(WebhookEvent.processed_at.is_not(None))
    elif status == "failed":
        query = query.where(WebhookEvent.processed_at.is_(None), WebhookEvent.attempts > 0)
    elif status == "pending":
        query = query.where(WebhookEvent.processed_at.is_(None), WebhookEvent.attempts == 0)
    return newest_first(query, WebhookEvent.id, before=before, limit=limit)


def get_webhook_event(pk: int) -> WebhookEvent:
    """Raises WebhookEventNotFound."""
    event = db.session.get(WebhookEvent, pk)
    if event is None:
        raise WebhookEventNotFound()
    return event


def failed_generations(limit: int = PAGE_SIZE) -> list[Generation]:
    """The most recent failed generations."""
    return list(
        db.session.execute(
            select(Generation)
            .where(Generation.status == GenerationStatus.FAILED)
            .order_by(Generation.finished_at.desc().nulls_last(), Generation.id.desc())
            .limit(limit)
        ).scalars()
    )


@dataclass(frozen=True)
class QueueState:
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int
    deferred: int


@dataclass(frozen=True)
class FailedJob:
    queue: str
    job_id: str
    description: str
    ended_at: datetime | None
    error: str


def queue_states(connection: redis.Redis) -> list[QueueState]:
    """How many jobs each rq queue holds, runs, failed, has scheduled and deferred."""
    states = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection)
        states.append(
            QueueState(
                name,
                queue.count,
                queue.started_job_registry.count,
                queue.failed_job_registry.count,
                queue.scheduled_job_registry.count,
                queue.deferred_job_registry.count,
            )
        )
    return states


def failed_jobs(
    connection: redis.Redis, queue_name: str = "generations", limit: int = PAGE_SIZE
) -> list[FailedJob]:
    """The newest jobs in a queue's failed registry, with the last line of their error."""
    queue = Queue(queue_name, connection=connection)
    registry = queue.failed_job_registry
    job_ids = registry.get_job_ids(0, limit - 1)
    jobs = []
    for job in Job.fetch_many(job_ids, connection=connection):
        if job is None:
            continue
        result = job.latest_result()
        error = (
            (result.exc_string or "").strip().splitlines()
            if result is not None and result.type == Result.Type.FAILED
            else []
        )
        jobs.append(
            FailedJob(
                queue_name,
                job.id,
                job.description or job.func_name or "",
                result.created_at if result is not None else None,
                error[-1] if error else "",
            )
        )
    return jobs


def set_sign_in_disabled(user_id: int, disabled: bool, reason: str, actor_id: int) -> User:
    """Disable an account's sign-in (which ends every session it has) or enable it again;
    audited with the reason.

    Raises ValidationFailed (no reason, or an admin disabling themselves), UserNotFound.
    """
    reason = audit.clean_reason(reason)
    if disabled and user_id == actor_id:
        raise ValidationFailed("You cannot disable your own account.", field="reason")
    user = credits.lock_user(user_id)
    if disabled and user.disabled_at is None:
        user.disabled_at = utcnow()
        user.session_version += 1
    elif not disabled:
        user.disabled_at = None
    audit.record(
        actor_id,
        "user.disable" if disabled else "user.enable",
        target_user_id=user.id,
        details={"reason": reason},
    )
    db.session.flush()
    return user
