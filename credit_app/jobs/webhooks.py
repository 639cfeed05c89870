"""Webhook jobs on the `webhooks` queue: apply a stored Creem event; sweep lapsed access."""

from __future__ import annotations

import logging

from credit_app.errors import WebhookEventNotFound
from credit_app.extensions import db
from credit_app.jobs import enqueue_after_commit, job_context
from credit_app.services import subscriptions

log = logging.getLogger(__name__)

def enqueue_event(event_id: str) -> None:
    """Process the stored event on the webhooks queue once the current transaction commits."""
    enqueue_after_commit("process_webhook_event", event_id,
                         description=f"creem event {event_id}")


def process_webhook_event(event_id: str) -> str:
    """Apply one stored event; safe to run twice (the second run finds it processed).

    A failure rolls the whole attempt back, notes the attempt and the error on the event row,
    and re-raises so that rq retries it (jobs/registry.py). Returns the outcome.
    """
    with job_context():
        try:
            outcome = subscriptions.process_event(event_id)
            db.session.commit()
        except WebhookEventNotFound:
            db.session.rollback()
            log.error("webhook event %s is not stored; nothing to do", event_id)
            return "missing"
        except Exception as exc:
            db.session.rollback()
            log.warning("webhook event %s failed: %s", event_id, exc)
            subscriptions.record_failure(event_id, exc)
            db.session.commit()
            raise
    log.info("webhook event %s: %s", event_id, outcome)
    return outcome


def sweep_lapsed_subscriptions() -> int:
    """Downgrade users whose canceled or past-due subscription's access ran out; the count."""
    with job_context():
        downgraded = subscriptions.downgrade_lapsed()
        db.session.commit()
    if downgraded:
        log.info("moved %d users back to the free plan: %s", len(downgraded), downgraded)
    return len(downgraded)
