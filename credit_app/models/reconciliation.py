"""Reconciliation with Creem: one row per run, one finding per difference it met.

A run (`reconciliation_runs`) reads every known customer's subscriptions from Creem's API and
compares them with ours (billing/reconciliation.py). Each difference becomes a finding with
both sides as they were read, and what became of it: `fixed` (applied through the webhook
path and checked again), or `needs_attention` (a person must decide: Creem does not know a
subscription we have, a product we do not sell, or a repair that did not converge).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.models.base import in_list, insert_timestamp
from credit_app.platform.extensions import Model

RUN_STATUSES: tuple[str, ...] = ("running", "finished", "failed")
# What differed: the status, the product (plan), the period end; a subscription Creem has
# and we do not, one we have and Creem does not; a product that is no configured plan; the
# user's plan against what their subscriptions give; Creem could not be read for a customer.
FINDING_KINDS: tuple[str, ...] = (
    "status",
    "product",
    "period_end",
    "missing_here",
    "missing_at_creem",
    "unknown_product",
    "plan",
    "unreadable",
)
RESOLUTIONS: tuple[str, ...] = ("fixed", "needs_attention")


class ReconciliationRun(Model):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        CheckConstraint(in_list("status", RUN_STATUSES), name="status_allowed"),
        Index("ix_reconciliation_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, default="running", server_default="running"
    )
    started_at: Mapped[datetime] = insert_timestamp()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    customers_checked: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    subscriptions_checked: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<ReconciliationRun {self.id} {self.status}>"


class ReconciliationFinding(Model):
    __tablename__ = "reconciliation_findings"
    __table_args__ = (
        CheckConstraint(in_list("kind", FINDING_KINDS), name="kind_allowed"),
        CheckConstraint(in_list("resolution", RESOLUTIONS), name="resolution_allowed"),
        Index("ix_reconciliation_findings_run_id", "run_id", "id"),
        Index("ix_reconciliation_findings_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("reconciliation_runs.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    creem_subscription_id: Mapped[str | None] = mapped_column(String(100))
    creem_customer_id: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    ours: Mapped[dict | None] = mapped_column(JSONB)
    theirs: Mapped[dict | None] = mapped_column(JSONB)
    resolution: Mapped[str] = mapped_column(String(20), nullable=False)
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    created_at: Mapped[datetime] = insert_timestamp()

    def __repr__(self) -> str:
        return f"<ReconciliationFinding {self.kind} {self.creem_subscription_id} {self.resolution}>"
