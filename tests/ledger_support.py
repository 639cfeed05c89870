"""What the ledger says, read straight from its rows, to compare with what the services
report."""

from __future__ import annotations

from sqlalchemy import func, select

from credit_app.models import CreditTransaction
from credit_app.platform.extensions import db


def ledger_balance(user_id: int) -> int:
    """The balance the ledger says the user has: the sum of their rows' amounts."""
    return db.session.execute(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.user_id == user_id
        )
    ).scalar_one()
