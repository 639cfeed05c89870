"""Work whose enqueue was lost (Redis down at commit time, retries exhausted) is queued again.

Every job it queues is safe to run twice, so a duplicate costs a no-op.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from credit_app.extensions import db
from credit_app.jobs import job_context
from credit_app.jobs.generations import run_generation
from credit_app.jobs.webhooks import RETRY, process_webhook_event
from credit_app.models import Generation, GenerationStatus, WebhookEvent
from credit_app.redis_client import get_queue
from credit_app.services.credits import utcnow

STRANDED_AFTER = timedelta(minutes=5)


def requeue_stranded_work(limit: int = 200) -> dict[str, int]:
    """Queue again the webhook events and generations left waiting past STRANDED_AFTER."""
    with job_context() as app:
        before = utcnow() - STRANDED_AFTER
        events = db.session.execute(
            select(WebhookEvent.event_id)
            .where(WebhookEvent.processed_at.is_(None), WebhookEvent.received_at < before)
            .order_by(WebhookEvent.received_at).limit(limit)
        ).scalars().all()
        queued = db.session.execute(
            select(Generation.id)
            .where(Generation.status == GenerationStatus.QUEUED, Generation.created_at < before)
            .order_by(Generation.id).limit(limit)
        ).scalars().all()
        db.session.rollback()
        for event_id in events:
            get_queue("webhooks").enqueue(process_webhook_event, event_id, retry=RETRY)
        for generation_pk in queued:
            get_queue("generations").enqueue(
                run_generation, generation_pk,
                job_timeout=app.config["GENERATION_JOB_TIMEOUT_SECONDS"])
    return {"webhook_events": len(events), "generations": len(queued)}
