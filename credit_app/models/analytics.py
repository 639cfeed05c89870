"""Analytics events: what people did, keyed by user id only (no email, address or content)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.extensions import db
from credit_app.models.user import _in_list

EVENT_TYPES: tuple[str, ...] = (
    "credit_consumed",
    "credit_depleted",
    "credit_granted",
    "upgrade_modal_shown",
    "upgrade_modal_dismissed",
    "upgrade_clicked",
    "subscription_upgraded",
    "subscription_canceled",
    "generation_failed",
)


class AnalyticsEvent(db.Model):
    __tablename__ = "analytics_events"
    __table_args__ = (
        Index("ix_analytics_events_type_occurred_at", "event_type", "occurred_at"),
        Index("ix_analytics_events_user_id", "user_id"),
        Index("uq_analytics_events_event_id", "event_id", unique=True),
        CheckConstraint(_in_list("event_type", EVENT_TYPES), name="event_type_allowed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False)
    event_type: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    feature: Mapped[str | None] = mapped_column(String(20))
    credits_remaining: Mapped[int | None] = mapped_column(Integer)
    properties: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict,
                                             server_default="{}")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                  server_default=func.now())
