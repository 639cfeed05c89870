"""Analytics jobs on the `analytics` queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from credit_app.extensions import db
from credit_app.jobs import job_context
from credit_app.services import analytics


def record_event(event_id: str, event_type: str, user_id: int | None, feature: str | None,
                 credits_remaining: int | None, occurred_at: str,
                 properties: dict[str, Any]) -> bool:
    """Store one event; running it twice stores it once."""
    with job_context():
        stored = analytics.store_event(event_id, event_type, user_id, feature, credits_remaining,
                                       datetime.fromisoformat(occurred_at), properties)
        db.session.commit()
    return stored
