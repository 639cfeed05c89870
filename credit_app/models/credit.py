"""The credit ledger (spec task 1.1.2) and the holds that long-running work takes on it.

Every change of `users.credits_remaining` writes one `credit_transactions` row in the same
transaction, so that the balance always equals the sum of `amount` over the user's rows.
A reservation is a pending transfer: `reserve` takes the credit, then exactly one of
`commit` (the credit is spent) or `release`/`expire` (it comes back) resolves it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.generation.features import FEATURE_KEYS, LEDGER_SOURCES
from credit_app.models.base import in_list, insert_timestamp
from credit_app.platform.extensions import Model


class LedgerKind(enum.StrEnum):
    GRANT = "grant"
    CONSUME = "consume"
    RESERVE = "reserve"
    RELEASE = "release"
    ADJUST = "adjust"
    EXPIRE = "expire"


# The kinds the database's check constraint allows: every LedgerKind, and 'refund', which the
# first migration allowed and nothing ever posted (the schema keeps it; a pack refund is posted
# as an `adjust` row).
SCHEMA_LEDGER_KINDS: tuple[str, ...] = (*LedgerKind, "refund")


class ReservationStatus(enum.StrEnum):
    PENDING = "pending"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Posting:
    """The facts of one ledger row as the credit service posts it: its columns, the plan
    before and after it, and what the use was charged (for a reservation's consume, the
    amount taken when it was reserved). What observers of the ledger read."""

    user_id: int
    kind: str
    amount: int
    balance_after: int
    feature_used: str
    credits_consumed: int
    generation_id: str | None
    reservation_id: int | None
    actor_id: int | None
    plan_before: str
    plan_after: str
    charged: int
    metadata: dict[str, Any] = field(default_factory=dict)


class CreditTransaction(Model):
    __tablename__ = "credit_transactions"
    __table_args__ = (
        Index("idx_credit_transactions_user_id", "user_id"),
        Index("idx_credit_transactions_created_at", "created_at"),
        Index("ix_credit_transactions_user_id_id", "user_id", text("id DESC")),
        Index(
            "uq_credit_transactions_user_generation_kind",
            "user_id",
            "generation_id",
            "kind",
            unique=True,
            postgresql_where=text("generation_id IS NOT NULL"),
        ),
        Index(
            "uq_credit_transactions_registration_grant",
            "user_id",
            unique=True,
            postgresql_where=text("feature_used = 'registration'"),
        ),
        CheckConstraint(in_list("feature_used", LEDGER_SOURCES), name="feature_used_allowed"),
        CheckConstraint(in_list("kind", SCHEMA_LEDGER_KINDS), name="kind_allowed"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        CheckConstraint("credits_consumed >= 0", name="credits_consumed_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    feature_used: Mapped[str] = mapped_column(String(20), nullable=False)
    credits_consumed: Mapped[int] = mapped_column(
        Integer, nullable=False, default=1, server_default="1"
    )
    generation_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = insert_timestamp()
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSONB)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    balance_after: Mapped[int] = mapped_column(Integer, nullable=False)
    reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_reservations.id", ondelete="RESTRICT")
    )
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "feature_used": self.feature_used,
            "amount": self.amount,
            "credits_consumed": self.credits_consumed,
            "balance_after": self.balance_after,
            "generation_id": self.generation_id,
            "created_at": self.created_at.isoformat(),
            "metadata": self.metadata_ or {},
        }


class CreditReservation(Model):
    __tablename__ = "credit_reservations"
    __table_args__ = (
        Index("uq_credit_reservations_user_generation", "user_id", "generation_id", unique=True),
        Index(
            "ix_credit_reservations_pending_expires_at",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
        ),
        CheckConstraint(in_list("status", tuple(ReservationStatus)), name="status_allowed"),
        CheckConstraint(in_list("feature", FEATURE_KEYS), name="feature_allowed"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("(status = 'pending') = (resolved_at IS NULL)", name="resolved_when_final"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    generation_id: Mapped[str] = mapped_column(String(255), nullable=False)
    feature: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    cost: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(
        String(10),
        nullable=False,
        default=ReservationStatus.PENDING,
        server_default=ReservationStatus.PENDING.value,
    )
    created_at: Mapped[datetime] = insert_timestamp()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_pending(self) -> bool:
        return self.status == ReservationStatus.PENDING

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "generation_id": self.generation_id,
            "feature": self.feature,
            "amount": self.amount,
            "status": self.status,
            "expires_at": self.expires_at.isoformat(),
        }


class LotSource(enum.StrEnum):
    """Where a lot's credits came from. `opening` holds the balance a user had when lots
    were introduced (migration 0010_ledger)."""

    OPENING = "opening"
    REGISTRATION = "registration"
    ADMIN_GRANT = "admin_grant"
    PACK = "pack"
    REFILL = "refill"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    SUBSCRIPTION = "subscription"


class CreditLot(Model):
    """One grant of credits, spent down in spend order (services/credits.py `SPEND_ORDER`):
    the lot that expires first, purchased lots last. `remaining` moves only through
    `credit_lot_movements` rows written with the ledger row that moved it, so each lot's
    `remaining` is the sum of its movements and a user's lots sum to their balance.

    A pack lot carries its Creem order id (unique: a pack is granted once per order); a
    refund closes it (`refunded_at`, `expires_at`) and `refund_shortfall` says how many of
    the refunded credits were already spent (admins look at those)."""

    __tablename__ = "credit_lots"
    __table_args__ = (
        Index("ix_credit_lots_user_live", "user_id", postgresql_where=text("remaining > 0")),
        Index(
            "ix_credit_lots_lapsing",
            "expires_at",
            postgresql_where=text("remaining > 0 AND expires_at IS NOT NULL"),
        ),
        Index(
            "uq_credit_lots_creem_order_id",
            "creem_order_id",
            unique=True,
            postgresql_where=text("creem_order_id IS NOT NULL"),
        ),
        CheckConstraint(in_list("source", tuple(LotSource)), name="source_allowed"),
        CheckConstraint("remaining >= 0 AND remaining <= granted", name="remaining_in_range"),
        CheckConstraint("refund_shortfall >= 0", name="refund_shortfall_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    granted: Mapped[int] = mapped_column(Integer, nullable=False)
    remaining: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purchased: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    creem_order_id: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[str | None] = mapped_column(String(100))
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_transactions.id", ondelete="RESTRICT")
    )
    created_at: Mapped[datetime] = insert_timestamp()
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refund_shortfall: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    shortfall_cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CreditLotMovement(Model):
    """How one ledger row moved one lot (the opening movement of an `opening` lot has none)."""

    __tablename__ = "credit_lot_movements"
    __table_args__ = (
        Index("ix_credit_lot_movements_lot_id", "lot_id"),
        Index("ix_credit_lot_movements_transaction_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lot_id: Mapped[int] = mapped_column(
        ForeignKey("credit_lots.id", ondelete="RESTRICT"), nullable=False
    )
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_transactions.id", ondelete="RESTRICT")
    )
    amount: Mapped[int] = mapped_column(Integer, nullable=False)


class CreditRefill(Model):
    """A free user's periodic top-up, once per (user, period): the key makes it idempotent;
    `amount` is 0 when the balance was at the target already."""

    __tablename__ = "credit_refills"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_transactions.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = insert_timestamp()
