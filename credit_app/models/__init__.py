"""Database models. Import from here so Alembic and the app see every table."""

from credit_app.models.analytics import EVENT_TYPES, AnalyticsEvent
from credit_app.models.api_token import ApiToken
from credit_app.models.credit import (
    CreditReservation,
    CreditTransaction,
    LedgerKind,
    ReservationStatus,
)
from credit_app.models.generation import Generation, GenerationStatus
from credit_app.models.user import SUBSCRIPTION_STATUSES, User, UserRole

__all__ = [
    "EVENT_TYPES",
    "SUBSCRIPTION_STATUSES",
    "AnalyticsEvent",
    "ApiToken",
    "CreditReservation",
    "CreditTransaction",
    "Generation",
    "GenerationStatus",
    "LedgerKind",
    "ReservationStatus",
    "User",
    "UserRole",
]
