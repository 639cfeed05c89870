"""Creem subscriptions as Creem's newest facts describe them, and the webhook events.

`subscriptions` keeps one row per Creem subscription (of any product: only the configured
Pro products give Pro): the newest snapshot's status, product, billing period and
`canceled_at`, and `last_event_at`, the time of the newest snapshot applied, so an older event
that arrives late cannot roll the state back. Nothing is remembered from earlier events: the
access rules (`billing/access.py`) read these facts only.

`webhook_events` stores every signed event once (its Creem id is unique): the raw payload for
admins, and the typed snapshot `billing/creem/events.py` made of it on receipt, in columns that
processing reads.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.billing.creem.events import CREEM_STATUSES
from credit_app.models.base import change_timestamp, in_list, insert_timestamp
from credit_app.platform.extensions import Model

# Why an admin should look at a subscription (access was taken away for it). The column and
# these names keep the database's spelling, `staff_flag`, from before the area was called admin.
STAFF_FLAGS: tuple[str, ...] = ("refund", "dispute")


class Subscription(Model):
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
        CheckConstraint(in_list("status", CREEM_STATUSES), name="status_allowed"),
        CheckConstraint(
            f"staff_flag IS NULL OR {in_list('staff_flag', STAFF_FLAGS)}", name="staff_flag_allowed"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    creem_subscription_id: Mapped[str] = mapped_column(String(100), nullable=False)
    creem_customer_id: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a time-bounded access (a cancellation's paid period, past-due grace) runs out.
    access_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    staff_flag: Mapped[str | None] = mapped_column(String(20))
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = insert_timestamp()
    updated_at: Mapped[datetime] = change_timestamp()

    def __repr__(self) -> str:
        return f"<Subscription {self.creem_subscription_id} {self.status} user={self.user_id}>"


class WebhookEvent(Model):
    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("uq_webhook_events_event_id", "event_id", unique=True),
        Index(
            "ix_webhook_events_unprocessed",
            "received_at",
            postgresql_where=text("processed_at IS NULL"),
        ),
        Index("ix_webhook_events_creem_subscription_id", "creem_subscription_id"),
        Index("ix_webhook_events_order_id", "order_id"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), nullable=False)
    event_type: Mapped[str] = mapped_column(String(60), nullable=False)
    payload: Mapped[dict] = mapped_column(JSONB, nullable=False)
    event_created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    received_at: Mapped[datetime] = insert_timestamp()
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # The typed snapshot made on receipt (billing/creem/events.py); processing reads these.
    created_at_raw_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_at_clamped: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    creem_subscription_id: Mapped[str | None] = mapped_column(String(100))
    creem_customer_id: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[str | None] = mapped_column(String(100))
    subscription_status: Mapped[str | None] = mapped_column(String(20))
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metadata_user_id: Mapped[str | None] = mapped_column(String(20))
    checkout_id: Mapped[str | None] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(200))
    amount_paid: Mapped[int | None] = mapped_column(BigInteger)
    amount_refunded: Mapped[int | None] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"<WebhookEvent {self.event_id} {self.event_type}>"
