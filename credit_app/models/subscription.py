"""Creem subscriptions as the webhooks describe them, and the webhook events themselves.

`subscriptions` keeps one row per Creem subscription: its Creem status, billing period, and
`last_event_at`, the `created_at` of the newest event applied to it, so an older event that
arrives late cannot roll the state back. `webhook_events` stores every signed event once (its
Creem id is unique) with its raw payload and how processing went.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.extensions import db
from credit_app.models.user import _in_list

# Creem's subscription statuses.
CREEM_STATUSES: tuple[str, ...] = (
    "incomplete",
    "active",
    "trialing",
    "past_due",
    "unpaid",
    "paused",
    "scheduled_cancel",
    "canceled",
    "expired",
)
# Why staff should look at a subscription (access was taken away for it).
STAFF_FLAGS: tuple[str, ...] = ("refund", "dispute")


class Subscription(db.Model):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("uq_subscriptions_creem_subscription_id", "creem_subscription_id", unique=True),
        Index("ix_subscriptions_user_id", "user_id"),
        Index("ix_subscriptions_creem_customer_id", "creem_customer_id"),
        Index(
            "ix_subscriptions_access_ends_at",
            "access_ends_at",
            postgresql_where=text("access_ends_at IS NOT NULL"),
        ),
        CheckConstraint(_in_list("status", CREEM_STATUSES), name="status_allowed"),
        CheckConstraint(f"staff_flag IS NULL OR {_in_list('staff_flag', STAFF_FLAGS)}",
                        name="staff_flag_allowed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"),
                                         nullable=False)
    creem_subscription_id: Mapped[str] = mapped_column(String(100), nullable=False)
    creem_customer_id: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                       server_default=false())
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    past_due_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a time-bounded access (cancel at period end, past-due grace) runs out.
    access_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    staff_flag: Mapped[str | None] = mapped_column(String(20))
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )

    def __repr__(self) -> str:
        return f"<Subscription {self.creem_subscription_id} {self.status} user={self.user_id}>"


class WebhookEvent(db.Model):
    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("uq_webhook_events_event_id", "event_id", unique=True),
        Index("ix_webhook_events_unprocessed", "received_at",
              postgresql_where=text("processed_at IS NULL")),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), nullable=False)
    event_type: Mapped[str] = mapped_column(String(60), nullable=False)
    payload: Mapped[dict] = mapped_column(JSONB, nullable=False)
    event_created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                          server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<WebhookEvent {self.event_id} {self.event_type}>"
