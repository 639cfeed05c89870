"""Account security and mail: welcome-grant mailboxes, admin recovery codes, the mail outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.models.base import insert_timestamp
from credit_app.platform.extensions import Model


class WelcomeMailbox(Model):
    """One row per mailbox identity that has had its welcome credits.

    The key is the SHA-256 of the folded address (services/mailboxes.py), so it outlives a
    deleted account without keeping the address, and a second account on the same mailbox
    gets no second grant.
    """

    __tablename__ = "welcome_mailboxes"

    mailbox_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = insert_timestamp()


class RecoveryCode(Model):
    """An admin's one-time recovery code for two-factor sign-in, kept as a hash."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = insert_timestamp()


class OutboundEmail(Model):
    """A message to send: written in the transaction that asks for it, sent by an rq job.

    `dedupe_key` makes one-time notifications one-time (unique where set). Links that carry
    a secret (reset, verification) are signed when the job renders the message, so no token
    is ever stored.
    """

    __tablename__ = "outbound_emails"
    __table_args__ = (
        Index(
            "uq_outbound_emails_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
        ),
        Index("ix_outbound_emails_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),
        Index("ix_outbound_emails_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_address: Mapped[str] = mapped_column(String(254), nullable=False)
    template: Mapped[str] = mapped_column(String(40), nullable=False)
    context: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict, server_default="{}")
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = insert_timestamp()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
