import pytest

from credit_app.errors import InvalidAmount, UserNotFound, ValidationFailed
from credit_app.models import LedgerKind
from credit_app.services import admin as admin_service
from credit_app.services import audit, credits
from tests.ledger_support import ledger_balance


def test_remove_credits_posts_an_audited_adjustment(user, admin):
    entry = credits.remove_credits(user.id, 2, "  Refunded elsewhere ", actor_id=admin.id)
    assert (entry.kind, entry.amount, entry.balance_after, entry.feature_used) == (
        LedgerKind.ADJUST,
        -2,
        4,
        "adjustment",
    )
    assert entry.metadata_ == {"reason": "Refunded elsewhere"}
    assert credits.get_user_credits(user.id).remaining == ledger_balance(user.id) == 4
    [logged] = audit.list_entries(target_user_id=user.id).items
    assert (logged.action, logged.actor_id, logged.details["transaction_id"]) == (
        "credits.remove",
        admin.id,
        entry.id,
    )


@pytest.mark.parametrize(
    ("amount", "reason", "error"),
    [
        (0, "x", InvalidAmount),
        (-1, "x", InvalidAmount),
        (True, "x", InvalidAmount),
        ("3", "x", InvalidAmount),
        (100_001, "x", InvalidAmount),
        (2, "", ValidationFailed),
        (2, None, ValidationFailed),
        (2, "x" * 501, ValidationFailed),
        (7, "x", ValidationFailed),
    ],
)
def test_remove_credits_refuses_bad_input(user, admin, amount, reason, error):
    with pytest.raises(error):
        credits.remove_credits(user.id, amount, reason, actor_id=admin.id)
    assert credits.get_user_credits(user.id).remaining == 6


def test_remove_credits_for_nobody(admin):
    with pytest.raises(UserNotFound):
        credits.remove_credits(99_999_999, 1, "x", actor_id=admin.id)


def test_api_grants_are_audited_too(user, admin):
    credits.grant_credits(user.id, 3, "Contest prize", actor_id=admin.id)
    credits.change_plan(user.id, "pro", "Comped", actor_id=admin.id)
    credits.grant_credits(user.id, 1, "System top-up")
    actions = [
        (entry.action, entry.details.get("reason"))
        for entry in audit.list_entries(target_user_id=user.id).items
    ]
    assert actions == [("plan.change", "Comped"), ("credits.grant", "Contest prize")]


def test_audit_rejects_unknown_actions(admin):
    with pytest.raises(ValidationFailed):
        audit.record(admin.id, "credits.steal")
    with pytest.raises(ValidationFailed):
        audit.list_entries(action="credits.steal")


def test_webhook_listing_rejects_an_unknown_filter():
    with pytest.raises(ValidationFailed):
        admin_service.list_webhook_events("sideways")
