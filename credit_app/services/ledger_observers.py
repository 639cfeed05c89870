"""What else is written, in the same transaction, when the credit service posts a ledger row.

`events_for` gives the analytics events the row implies (the outbox), which `credits._post`
writes in the same statement as the row; `after_post` enqueues the notification the row may
call for (services/notifications.py, decided from the row alone, so no query) and writes the
audit row when an admin made the change (`actor_id`). So the API, the admin pages and
the CLI are audited alike, and a rollback removes all of it.
"""

from __future__ import annotations

from typing import Any

from credit_app.models import LedgerKind, Posting
from credit_app.services import analytics, audit, notifications


def audit_action(posting: Posting) -> str:
    """The audit action an admin's ledger row stands for."""
    if posting.kind == LedgerKind.GRANT:
        return "credits.grant"
    if posting.kind == LedgerKind.ADJUST and posting.feature_used == "subscription":
        return "plan.change"
    if posting.kind == LedgerKind.ADJUST and posting.amount < 0:
        return "credits.remove"
    return "credits.adjust"


def events_for(posting: Posting) -> list[dict[str, Any]]:
    """The analytics events of a ledger row about to be written, as column values."""
    return analytics.ledger_events(posting)


def after_post(entry_id: int, posting: Posting) -> None:
    """Enqueue the notification of a just-written ledger row (one credit left, used up,
    Welcome to Pro) and write its audit row if an admin made it."""
    notifications.on_ledger_row(entry_id, posting)
    if posting.actor_id is None:
        return
    details = {
        "amount": posting.amount,
        "transaction_id": entry_id,
        "balance_after": posting.balance_after,
        "reason": posting.metadata.get("reason"),
    }
    if posting.kind == LedgerKind.ADJUST and posting.feature_used == "subscription":
        details.update({"from": posting.metadata.get("from"), "to": posting.metadata.get("to")})
    audit.record(
        posting.actor_id, audit_action(posting), target_user_id=posting.user_id, details=details
    )
