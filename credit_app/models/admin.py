"""Admin-side state: feature flags with a percentage rollout, and the audit log of admin actions.

The sign-in actions keep the `staff.` prefix they were first stored with: the audit_log table's
check constraint lists them (migration 0007), and rows already written carry them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.models.base import change_timestamp, in_list, insert_timestamp
from credit_app.platform.extensions import Model

AUDIT_ACTIONS: tuple[str, ...] = (
    "credits.grant",
    "credits.remove",
    "credits.adjust",
    "plan.change",
    "rollout.change",
    "webhook.rerun",
    "account.delete",
    "staff.sign_in",
    "staff.sign_in_failed",
    "staff.two_factor_enabled",
    "user.disable",
    "user.enable",
)


class FeatureFlag(Model):
    """A switch rolled out to `percentage` % of users, chosen by a hash of their id."""

    __tablename__ = "feature_flags"
    __table_args__ = (CheckConstraint("percentage BETWEEN 0 AND 100", name="percentage_range"),)

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    percentage: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = change_timestamp()


class AuditLogEntry(Model):
    """One admin action: who did what to whom, with its details (no emails or addresses)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index(
            "ix_audit_log_target_user_id",
            "target_user_id",
            postgresql_where=text("target_user_id IS NOT NULL"),
        ),
        Index("ix_audit_log_action_id", "action", "id"),
        CheckConstraint(in_list("action", AUDIT_ACTIONS), name="action_allowed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    target_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    target: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict, server_default="{}")
    created_at: Mapped[datetime] = insert_timestamp()
