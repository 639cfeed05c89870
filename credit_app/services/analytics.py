"""Analytics events: recorded by an rq job after the request commits; user id only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert

from credit_app.errors import ValidationFailed
from credit_app.extensions import db
from credit_app.models import EVENT_TYPES, AnalyticsEvent
from credit_app.services.credits import utcnow


def track(event_type: str, user_id: int | None, *, feature: str | None = None,
          credits_remaining: int | None = None, properties: dict[str, Any] | None = None) -> str:
    """Queue an event to be recorded once the current transaction commits; returns its id.

    Raises ValidationFailed for an unknown event type.
    """
    from credit_app.jobs import enqueue_after_commit
    from credit_app.jobs.analytics import record_event

    if event_type not in EVENT_TYPES:
        raise ValidationFailed(f"Unknown analytics event {event_type!r}.")
    event_id = uuid.uuid4().hex
    enqueue_after_commit("analytics", record_event, event_id, event_type, user_id, feature,
                         credits_remaining, utcnow().isoformat(), properties or {})
    return event_id


def store_event(event_id: str, event_type: str, user_id: int | None, feature: str | None,
                credits_remaining: int | None, occurred_at: datetime,
                properties: dict[str, Any]) -> bool:
    """Insert the event unless it is already stored; True if this call stored it."""
    inserted = db.session.execute(
        insert(AnalyticsEvent)
        .values(event_id=event_id, event_type=event_type, user_id=user_id, feature=feature,
                credits_remaining=credits_remaining, occurred_at=occurred_at,
                properties=properties)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(AnalyticsEvent.id)
    ).scalar_one_or_none()
    return inserted is not None
