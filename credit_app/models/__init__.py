"""Database models. Import from here so Alembic and the app see every table."""

from credit_app.models.account import OutboundEmail, RecoveryCode, WelcomeMailbox
from credit_app.models.admin import AUDIT_ACTIONS, AuditLogEntry, FeatureFlag
from credit_app.models.analytics import (
    EVENT_TYPES,
    AnalyticsActiveDay,
    AnalyticsDailyActiveUsers,
    AnalyticsDailyRollup,
    AnalyticsEvent,
    AnalyticsUserFunnel,
)
from credit_app.models.api_token import ApiToken
from credit_app.models.credit import (
    CreditLot,
    CreditLotMovement,
    CreditRefill,
    CreditReservation,
    CreditTransaction,
    LedgerKind,
    LotSource,
    Posting,
    ReservationStatus,
)
from credit_app.models.generation import Generation, GenerationStatus
from credit_app.models.reconciliation import (
    FINDING_KINDS,
    ReconciliationFinding,
    ReconciliationRun,
)
from credit_app.models.subscription import (
    CREEM_STATUSES,
    STAFF_FLAGS,
    Subscription,
    WebhookEvent,
)
from credit_app.models.user import SUBSCRIPTION_STATUSES, User, UserRole

__all__ = [
    "AUDIT_ACTIONS",
    "CREEM_STATUSES",
    "EVENT_TYPES",
    "FINDING_KINDS",
    "STAFF_FLAGS",
    "SUBSCRIPTION_STATUSES",
    "AnalyticsActiveDay",
    "AnalyticsDailyActiveUsers",
    "AnalyticsDailyRollup",
    "AnalyticsEvent",
    "AnalyticsUserFunnel",
    "ApiToken",
    "AuditLogEntry",
    "CreditLot",
    "CreditLotMovement",
    "CreditRefill",
    "CreditReservation",
    "CreditTransaction",
    "FeatureFlag",
    "Generation",
    "GenerationStatus",
    "LedgerKind",
    "LotSource",
    "OutboundEmail",
    "Posting",
    "ReconciliationFinding",
    "ReconciliationRun",
    "RecoveryCode",
    "ReservationStatus",
    "Subscription",
    "User",
    "UserRole",
    "WebhookEvent",
    "WelcomeMailbox",
]
