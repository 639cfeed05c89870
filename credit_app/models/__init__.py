"""Database models. Import from here so Alembic and the app see every table."""

from credit_app.models.api_token import ApiToken
from credit_app.models.credit import (
    CreditReservation,
    CreditTransaction,
    LedgerKind,
    ReservationStatus,
)
from credit_app.models.user import SUBSCRIPTION_STATUSES, User, UserRole

__all__ = [
    "SUBSCRIPTION_STATUSES",
    "ApiToken",
    "CreditReservation",
    "CreditTransaction",
    "LedgerKind",
    "ReservationStatus",
    "User",
    "UserRole",
]
