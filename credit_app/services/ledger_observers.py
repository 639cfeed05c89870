"""What else is written, in the same transaction, when the credit service posts a ledger row.

`observe` is called once at the end of `credits._post`: it writes the analytics events the
row implies (the outbox) and, when a staff member made the change (`actor_id`), an audit row.
So the API, the admin pages and the CLI are audited alike, and a rollback removes all of it.
"""

from __future__ import annotations

from credit_app.models import CreditTransaction, LedgerKind, User
from credit_app.services import analytics, audit


def audit_action(entry: CreditTransaction) -> str:
    """The audit action a staff member's ledger row stands for."""
    if entry.kind == LedgerKind.GRANT:
        return "credits.grant"
    if entry.kind == LedgerKind.ADJUST and entry.feature_used == "subscription":
        return "plan.change"
    if entry.kind == LedgerKind.ADJUST and entry.amount < 0:
        return "credits.remove"
    return "credits.adjust"


def observe(entry: CreditTransaction, user: User) -> None:
    """Write the analytics events of a just-flushed ledger row, and its audit row if by staff."""
    analytics.record_ledger_event(entry, user)
    if entry.actor_id is not None:
        metadata = entry.metadata_ or {}
        details = {"amount": entry.amount, "transaction_id": entry.id,
                   "balance_after": entry.balance_after, "reason": metadata.get("reason")}
        if entry.kind == LedgerKind.ADJUST and entry.feature_used == "subscription":
            details.update({"from": metadata.get("from"), "to": metadata.get("to")})
        audit.record(entry.actor_id, audit_action(entry), target_user_id=user.id,
                     details=details)
