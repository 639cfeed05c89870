"""The audit log: one row per admin action, written in the same transaction as the action."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from credit_app.errors import ValidationFailed
from credit_app.models import AUDIT_ACTIONS, AuditLogEntry
from credit_app.platform.extensions import db
from credit_app.services.limits import MAX_REASON_LENGTH
from credit_app.services.paging import Page, newest_first

PAGE_SIZE = 50


def clean_reason(reason: object) -> str:
    """The reason an admin gave, trimmed. Raises ValidationFailed when empty or too long."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not 1 <= len(text) <= MAX_REASON_LENGTH:
        raise ValidationFailed(
            f"A reason of 1 to {MAX_REASON_LENGTH} characters is required.", field="reason"
        )
    return text


def record(
    actor_id: int | None,
    action: str,
    *,
    target_user_id: int | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLogEntry:
    """Write one audit row. Raises ValidationFailed for an action not in AUDIT_ACTIONS."""
    if action not in AUDIT_ACTIONS:
        raise ValidationFailed(f"Unknown audit action {action!r}.")
    entry = AuditLogEntry(
        actor_id=actor_id,
        action=action,
        target_user_id=target_user_id,
        target=target,
        details=details or {},
    )
    db.session.add(entry)
    db.session.flush()
    return entry


def list_entries(
    action: str | None = None,
    target_user_id: int | None = None,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page[AuditLogEntry]:
    """Audit rows newest first, a page at a time (`before` is the last id of the previous page).

    Raises ValidationFailed for an unknown action.
    """
    if action is not None and action not in AUDIT_ACTIONS:
        raise ValidationFailed(f"Unknown audit action {action!r}.", field="action")
    query = select(AuditLogEntry)
    if action is not None:
        query = query.where(AuditLogEntry.action == action)
    if target_user_id is not None:
        query = query.where(AuditLogEntry.target_user_id == target_user_id)
    return newest_first(query, AuditLogEntry.id, before=before, limit=limit)
