"""Users: the account, its role, and the credit balance columns of spec task 1.1.1."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    String,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from credit_app.models.base import change_timestamp, in_list, insert_timestamp
from credit_app.platform.extensions import Model

SUBSCRIPTION_STATUSES: tuple[str, ...] = ("free", "pro")


class UserRole(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(UserMixin, Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("credits_remaining >= 0", name="credits_remaining_non_negative"),
        CheckConstraint("credits_total >= 0", name="credits_total_non_negative"),
        CheckConstraint(
            in_list("subscription_status", SUBSCRIPTION_STATUSES),
            name="subscription_status_allowed",
        ),
        CheckConstraint(in_list("role", tuple(UserRole)), name="role_allowed"),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
        Index("ix_users_subscription_status", "subscription_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(
        String(10), nullable=False, default=UserRole.USER, server_default=UserRole.USER.value
    )
    credits_remaining: Mapped[int] = mapped_column(
        Integer, nullable=False, default=6, server_default="6"
    )
    credits_total: Mapped[int] = mapped_column(
        Integer, nullable=False, default=6, server_default="6"
    )
    subscription_status: Mapped[str] = mapped_column(
        String(20), nullable=False, default="free", server_default="free"
    )
    credits_granted_at: Mapped[datetime] = insert_timestamp()
    sidebar_collapsed: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = insert_timestamp()
    updated_at: Mapped[datetime] = change_timestamp()
    # Set when the person deleted their account: the row stays, without personal data, so that
    # the ledger and analytics that refer to it keep their totals.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set once the person followed the link mailed to `email`; generations need it.
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An address the person asked to move to; it replaces `email` once verified.
    pending_email: Mapped[str | None] = mapped_column(String(254))
    # Part of the session id (get_id): raising it ends every session and remember-me cookie.
    session_version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    # Set by an admin: the account cannot sign in.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Admin two-factor: the TOTP secret (base32), when it was confirmed, the last step used.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Notification kinds (services/notifications.py) the person turned off.
    email_opt_outs: Mapped[list] = mapped_column(
        JSONB, nullable=False, default=list, server_default="[]"
    )

    def get_id(self) -> str:
        """The session's user id: the row id and the session version, so that raising the
        version signs out every session and remember-me cookie."""
        return f"{self.id}.{self.session_version}"

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    @property
    def has_two_factor(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def is_pro(self) -> bool:
        return self.subscription_status == "pro"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
