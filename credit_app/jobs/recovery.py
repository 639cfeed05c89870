"""Work whose job was lost is queued again: an enqueue that failed at commit time (Redis down,
the breaker open), retries that ran out during an outage, or a worker killed mid-generation.

How long work may wait before it counts as stranded comes from the job registry and the
credit hold, never from a fixed delay (`stranded_after`). Every job it queues is safe to run
twice, so a duplicate costs a no-op; a webhook event whose job is still queued, scheduled or
running gets no second one (one job per event).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, or_, select

from credit_app.jobs import enqueue_now, job_context, registry
from credit_app.jobs.webhooks import requeue_event
from credit_app.models import (
    CreditReservation,
    Generation,
    GenerationStatus,
    OutboundEmail,
    ReservationStatus,
    WebhookEvent,
)
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db

# An email still unsent after this many attempts is left to the admins (its error is on the row).
MAX_MAIL_ATTEMPTS = 10


def stranded_after(config: Mapping[str, Any]) -> dict[str, timedelta]:
    """How long queued work waits before recovery queues it again, per job.

    - A queued generation must still get a whole job timeout out of its credit hold, so it is
      queued again after one recovery period, or after half the slack of its hold
      (RESERVATION_TIMEOUT_SECONDS - its job timeout) when that is shorter.
    - A running generation is stale once its job timeout has passed (rq would have stopped a
      live job by then: its worker died); it is queued again while its hold lasts.
    - A webhook event never attempted waits one recovery period; one that failed waits for
      its whole retry window first. An email likewise.
    """
    period = registry.job("requeue_stranded_work").period_seconds(config) or 60
    generation = registry.job("run_generation")
    job_timeout = generation.timeout_seconds(config)
    slack = max(config["RESERVATION_TIMEOUT_SECONDS"] - job_timeout, 2)
    webhook = registry.job("process_webhook_event")
    email = registry.job("deliver_email")
    return {
        "new_email": timedelta(seconds=period),
        "failed_email": timedelta(seconds=email.retry_window_seconds + period),
        "queued_generation": timedelta(seconds=min(period, slack / 2)),
        "running_generation": timedelta(seconds=job_timeout + 1),
        "new_webhook_event": timedelta(seconds=period),
        "failed_webhook_event": timedelta(seconds=webhook.retry_window_seconds + period),
    }


def stranded_generations(limit: int, now=None) -> list[tuple[int, str]]:
    """Queued generations waiting too long, and running ones whose job died, while their hold
    is pending and has time left: (id, queue) each."""
    limits = stranded_after(current_app.config)
    now = now or utcnow()
    return [
        (generation_pk, queue)
        for generation_pk, queue in db.session.execute(
            select(Generation.id, Generation.queue)
            .join(CreditReservation, CreditReservation.id == Generation.reservation_id)
            .where(
                CreditReservation.status == ReservationStatus.PENDING,
                CreditReservation.expires_at > now,
                or_(
                    (Generation.status == GenerationStatus.QUEUED)
                    & (Generation.created_at < now - limits["queued_generation"]),
                    (Generation.status == GenerationStatus.RUNNING)
                    & (Generation.started_at < now - limits["running_generation"]),
                ),
            )
            .order_by(Generation.id)
            .limit(limit)
        )
    ]


def _waited_too_long(
    attempts: ColumnElement[int],
    since: ColumnElement[datetime],
    new_before: datetime,
    failed_before: datetime,
) -> ColumnElement[bool]:
    """Never attempted and waiting since before `new_before`, or waiting since before
    `failed_before` (its retries have run out by then)."""
    return or_((attempts == 0) & (since < new_before), since < failed_before)


def stranded_webhook_events(limit: int, now=None) -> list[str]:
    limits = stranded_after(current_app.config)
    now = now or utcnow()
    return list(
        db.session.execute(
            select(WebhookEvent.event_id)
            .where(
                WebhookEvent.processed_at.is_(None),
                _waited_too_long(
                    WebhookEvent.attempts,
                    WebhookEvent.received_at,
                    now - limits["new_webhook_event"],
                    now - limits["failed_webhook_event"],
                ),
            )
            .order_by(WebhookEvent.received_at)
            .limit(limit)
        ).scalars()
    )


def stranded_emails(limit: int, now=None) -> list[int]:
    """Unsent emails whose delivery job was lost or ran out of retries (up to
    MAX_MAIL_ATTEMPTS attempts in all)."""
    limits = stranded_after(current_app.config)
    now = now or utcnow()
    return list(
        db.session.execute(
            select(OutboundEmail.id)
            .where(
                OutboundEmail.sent_at.is_(None),
                OutboundEmail.attempts < MAX_MAIL_ATTEMPTS,
                _waited_too_long(
                    OutboundEmail.attempts,
                    OutboundEmail.created_at,
                    now - limits["new_email"],
                    now - limits["failed_email"],
                ),
            )
            .order_by(OutboundEmail.id)
            .limit(limit)
        ).scalars()
    )


def requeue_stranded_work(limit: int = 200) -> dict[str, int]:
    """Queue again the webhook events, generations and emails whose jobs were lost; the
    counts."""
    with job_context():
        events = stranded_webhook_events(limit)
        generations = stranded_generations(limit)
        emails = stranded_emails(limit)
        db.session.rollback()
        for email_id in emails:
            enqueue_now("deliver_email", email_id)
        for event_id in events:
            requeue_event(event_id)
        for generation_pk, queue in generations:
            enqueue_now(registry.generation_job(queue), generation_pk)
    return {"webhook_events": len(events), "generations": len(generations), "emails": len(emails)}
