"""Notifications people expect from a credits product, each sent once.

They are decided where the facts are written and sent later: the ledger observer
(`on_ledger_row`, called for every ledger row) and the subscription apply path
(`on_subscription_applied`) only enqueue a job after commit; the job reads the facts again,
checks the person's choices and writes the message to the outbox with a dedupe key.

The ordinary spend costs nothing here: a crossing into one or zero credits is read from the
row's `balance_after` (the job reads the person's opt-outs).

Receipts (Welcome to Pro, cancellation confirmed) always go out; the others can be turned off
in the account settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeGuard

from flask import current_app

from credit_app.models import CreditTransaction, LedgerKind, Posting, Subscription, User
from credit_app.platform.extensions import db

OPTIONAL_KINDS: dict[str, str] = {
    "one_credit_left": "When I have one credit left",
    "credits_used_up": "When I have used all my credits",
    "payment_failed": "When a payment for Pro fails",
}
RECEIPT_KINDS = ("pro_welcome", "cancellation")


def wants(user: User, kind: str) -> bool:
    """Whether the user gets `kind` (receipts always)."""
    return kind in RECEIPT_KINDS or kind not in (user.email_opt_outs or [])


def set_opt_outs(user: User, turned_off: list[str]) -> None:
    user.email_opt_outs = sorted(kind for kind in set(turned_off) if kind in OPTIONAL_KINDS)
    db.session.flush()


def _balance_kind(balance_after: int) -> str | None:
    return {1: "one_credit_left", 0: "credits_used_up"}.get(balance_after)


def on_ledger_row(entry_id: int, posting: Posting) -> None:
    """Enqueue the notice a just-written ledger row calls for, if any (no queries: the
    person's choices are read by the job)."""
    from credit_app.jobs import enqueue_after_commit

    if posting.amount < 0 and posting.plan_after != "pro":
        if _balance_kind(posting.balance_after) is not None:
            enqueue_after_commit("notify_balance", posting.user_id, entry_id)
    elif (
        posting.kind == LedgerKind.ADJUST
        and posting.feature_used == "subscription"
        and posting.plan_after == "pro"
        and posting.plan_before != "pro"
    ):
        enqueue_after_commit("notify_plan_change", entry_id)


def on_subscription_applied(subscription: Subscription) -> None:
    """Enqueue the check for a cancellation or payment-failed notice of the subscription."""
    from credit_app.jobs import enqueue_after_commit

    if subscription.status in ("scheduled_cancel", "canceled", "past_due"):
        enqueue_after_commit("notify_subscription", subscription.id)


def _mailable(user: User | None) -> TypeGuard[User]:
    return user is not None and not user.is_deleted and user.is_verified


def balance_notice(user_id: int, transaction_id: int) -> str:
    """Queue one-credit-left or credits-used-up, once per grant (keyed by the credits total),
    unless the balance went up again meanwhile (a released hold) or the person opted out."""
    from credit_app.services import mail

    user = db.session.get(User, user_id)
    entry = db.session.get(CreditTransaction, transaction_id)
    if entry is None or entry.user_id != user_id or not _mailable(user):
        return "skipped"
    kind = _balance_kind(entry.balance_after)
    if kind is None or not wants(user, kind) or user.is_pro:
        return "skipped"
    if user.credits_remaining > entry.balance_after:
        return "balance went up again"
    queued = mail.queue_email(
        user.email,
        kind,
        user_id=user.id,
        context={"remaining": entry.balance_after, "total": user.credits_total},
        dedupe_key=f"{kind}:{user.id}:{user.credits_total}",
    )
    return "queued" if queued else "sent before"


def _current_subscription(user_id: int) -> Subscription | None:
    from sqlalchemy import select

    return db.session.execute(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.updated_at.desc(), Subscription.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def plan_notice(transaction_id: int) -> str:
    """Queue Welcome to Pro for the ledger row that made the user Pro (once per row)."""
    from credit_app.services import mail

    entry = db.session.get(CreditTransaction, transaction_id)
    user = db.session.get(User, entry.user_id) if entry is not None else None
    if (
        entry is None
        or (entry.metadata_ or {}).get("to") != "pro"
        or user is None
        or user.is_deleted
    ):
        return "skipped"
    subscription = _current_subscription(user.id)
    context: dict[str, Any] = {
        "credits_kept": user.credits_remaining,
        "renews_on": _date(subscription.current_period_end) if subscription is not None else None,
        "plan_name": _plan_name(subscription),
    }
    queued = mail.queue_email(
        user.email,
        "pro_welcome",
        user_id=user.id,
        context=context,
        dedupe_key=f"pro_welcome:{entry.id}",
    )
    return "queued" if queued else "sent before"


def subscription_notice(subscription_id: int) -> str:
    """Queue cancellation-confirmed (with the date access ends) or payment-failed (with the
    end of the grace period), once per subscription and date."""
    from credit_app.services import mail

    subscription = db.session.get(Subscription, subscription_id)
    user = db.session.get(User, subscription.user_id) if subscription is not None else None
    if subscription is None or user is None or user.is_deleted:
        return "skipped"
    ends = subscription.access_ends_at
    if subscription.status == "past_due" and ends is not None:
        kind = "payment_failed"
    elif subscription.status in ("scheduled_cancel", "canceled") and ends is not None:
        kind = "cancellation"
    else:
        return "nothing to say"
    if not wants(user, kind):
        return "opted out"
    queued = mail.queue_email(
        user.email,
        kind,
        user_id=user.id,
        context={"access_ends": _date(ends), "plan_name": _plan_name(subscription)},
        dedupe_key=f"{kind}:{subscription.id}:{ends.isoformat()}",
    )
    return "queued" if queued else "sent before"


def _date(value: datetime | None) -> str | None:
    return value.strftime("%B %-d, %Y") if value is not None else None


def _plan_name(subscription: Subscription | None) -> str:
    config = current_app.config
    if subscription is not None and subscription.product_id == config.get(
        "CREEM_PRODUCT_PRO_YEARLY"
    ):
        return config["PRO_YEARLY_NAME"]
    return config["PRO_MONTHLY_NAME"]
