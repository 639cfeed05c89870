"""Analytics: raw events (the outbox) and the rollups the admin dashboard reads.

Events carry a user id only (no email, address or uploaded content). A raw event is
`pending` until the rollup job folds it into `analytics_daily_rollups` (counts per day,
event type, feature and plan), `analytics_active_days` (who used a feature on which day),
`analytics_daily_active_users` (how many per day) and `analytics_user_funnels` (each user's
first depletion, modal, click and upgrade) and stamps `rolled_up_at`, in one transaction.
Rolled-up raw events are deleted after the retention.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.models.base import in_list, insert_timestamp
from credit_app.platform.extensions import Model

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


class AnalyticsEvent(Model):
    __tablename__ = "analytics_events"
    __table_args__ = (
        Index("ix_analytics_events_type_occurred_at", "event_type", "occurred_at"),
        Index("ix_analytics_events_user_id", "user_id"),
        Index("uq_analytics_events_event_id", "event_id", unique=True),
        Index("ix_analytics_events_occurred_at", "occurred_at"),
        Index(
            "ix_analytics_events_pending",
            "occurred_at",
            postgresql_where=text("rolled_up_at IS NULL"),
        ),
        CheckConstraint(in_list("event_type", EVENT_TYPES), name="event_type_allowed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False)
    event_type: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    feature: Mapped[str | None] = mapped_column(String(20))
    credits_remaining: Mapped[int | None] = mapped_column(Integer)
    properties: Mapped[dict] = mapped_column(
        JSONB, nullable=False, default=dict, server_default="{}"
    )
    occurred_at: Mapped[datetime] = insert_timestamp()
    # The plan the user was on, the credits the event moved, and the ledger row it follows.
    plan: Mapped[str | None] = mapped_column(String(10))
    credits: Mapped[int | None] = mapped_column(Integer)
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_transactions.id", ondelete="SET NULL")
    )
    rolled_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AnalyticsDailyRollup(Model):
    """Events per UTC day, type, feature ('' for none) and plan ('' when unknown)."""

    __tablename__ = "analytics_daily_rollups"
    __table_args__ = (
        CheckConstraint(in_list("event_type", EVENT_TYPES), name="event_type_allowed"),
        CheckConstraint("events >= 0", name="events_non_negative"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    feature: Mapped[str] = mapped_column(String(20), primary_key=True)
    plan: Mapped[str] = mapped_column(String(10), primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class AnalyticsActiveDay(Model):
    """A user who used a feature on a UTC day, on a plan: distinct active users over any range."""

    __tablename__ = "analytics_active_days"
    __table_args__ = (Index("ix_analytics_active_days_user_id", "user_id"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    plan: Mapped[str] = mapped_column(String(10), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class AnalyticsDailyActiveUsers(Model):
    """How many distinct users used a feature on a UTC day, per plan (from the rows above)."""

    __tablename__ = "analytics_daily_active_users"
    __table_args__ = (CheckConstraint("users >= 0", name="users_non_negative"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    plan: Mapped[str] = mapped_column(String(10), primary_key=True)
    users: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


class AnalyticsUserFunnel(Model):
    """Each user's first depletion, upgrade modal, upgrade click and upgrade, and last use.

    The rollup job merges events in with LEAST/GREATEST, so the order and the number of times
    it sees an event do not matter.
    """

    __tablename__ = "analytics_user_funnels"
    __table_args__ = (
        Index(
            "ix_analytics_user_funnels_first_depleted_at",
            "first_depleted_at",
            postgresql_where=text("first_depleted_at IS NOT NULL"),
        ),
        Index(
            "ix_analytics_user_funnels_first_modal_shown_at",
            "first_modal_shown_at",
            postgresql_where=text("first_modal_shown_at IS NOT NULL"),
        ),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    signed_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    first_depleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_modal_shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_upgrade_clicked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_upgraded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
