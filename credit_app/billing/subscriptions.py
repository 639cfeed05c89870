"""Subscriptions: applying Creem's facts to the rows, the user's plan, cancel / resume / plan
switch, the billing portal, admin flags and the period-end sweep.

The reconciliation is modelled on documenso's `syncStripeCustomerSubscription`: every change
goes through `apply_snapshot`, which takes one snapshot of the subscription (an event's, or
Creem's API answer), re-reads the subscription from Creem where the snapshot is ambiguous,
writes the newest facts to the row under its lock and then makes the user's plan match what
all their subscriptions give (`sync_user_plan`, under the user's lock). A snapshot older than
the newest one applied changes nothing, so running it any number of times, in any order, on
any number of workers, ends in the state of the newest facts.

A snapshot is ambiguous, and Creem's API is asked instead, when:
- the event type and the object's status disagree (Creem's own `subscription.expired` sample
  says `"status": "active"`);
- its status bounds access by the period end (scheduled_cancel, canceled, past_due) but the
  event carries no `current_period_end_date`;
- it is exactly as new as the applied one but says another status (Creem's `checkout.completed`
  and `subscription.active` samples share a `created_at`);
- its subscription is new to us and neither its metadata, nor a known customer, names a user
  (Creem documents `subscription.active` and `subscription.expired` without metadata: the API's
  subscription carries the checkout's metadata), or its product is unknown.

Every change of `users.subscription_status` goes through `credits.change_plan` (an amount-0
ledger row with the reason). Services flush and never commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from credit_app.billing import access
from credit_app.billing.creem.client import CreemClient
from credit_app.billing.creem.events import CANCEL_MODES, SubscriptionSnapshot
from credit_app.billing.plans import (
    Plan,
    get_plan,
    is_pro_product,
    other_plan,
    plan_for_product,
    plans,
)
from credit_app.errors import (
    CreemError,
    NoSubscription,
    SubscriptionActionNotAllowed,
    UserNotFound,
    ValidationFailed,
    WebhookEventUnresolved,
)
from credit_app.models import CreditTransaction, Subscription, User
from credit_app.models.base import lock_one, read_current
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db
from credit_app.services import credits, notifications

log = logging.getLogger(__name__)

# How a plan switch is billed: Creem charges the prorated difference at once.
SWITCH_BEHAVIOR = "proration-charge-immediately"
# Why a plan changed, as the user reads it in their credit history.
_WHY: dict[str, str] = {
    "active": "payment received",
    "trialing": "trial started",
    "scheduled_cancel": "subscription canceled",
    "canceled": "subscription canceled",
    "past_due": "payment past due",
    "unpaid": "payment failed",
    "expired": "subscription expired",
    "paused": "subscription paused",
    "incomplete": "payment not completed",
    "refund": "payment refunded",
    "dispute": "payment disputed",
}


@dataclass(frozen=True)
class SubscriptionStatus:
    """What the subscription page shows: the user's plan and their current Pro subscription."""

    plan: str
    subscription: Subscription | None
    plan_info: Plan | None
    entitled: bool
    renews_at: datetime | None
    ends_at: datetime | None
    can_cancel: bool
    can_resume: bool
    can_manage_billing: bool
    switch_to: Plan | None

    @property
    def is_pro(self) -> bool:
        return self.plan == "pro"

    @property
    def status(self) -> str | None:
        return self.subscription.status if self.subscription else None

    @property
    def flagged(self) -> bool:
        return bool(self.subscription and self.subscription.staff_flag)


def creem_client() -> CreemClient:
    """The app's client for the configured Creem API (or the local stand-in), shared by the
    process's threads and made again if the settings change."""
    config = current_app.config
    settings = (config["CREEM_API_URL"], config["CREEM_API_KEY"], config["CREEM_TIMEOUT_SECONDS"])
    cached = current_app.extensions.get("creem_client")
    if cached is None or cached[0] != settings:
        cached = (settings, CreemClient.from_config(config))
        current_app.extensions["creem_client"] = cached
    return cached[1]


# -- the user's plan -------------------------------------------------------------------------


def user_subscriptions(user_id: int) -> list[Subscription]:
    return list(
        read_current(
            select(Subscription)
            .where(Subscription.user_id == user_id)
            .order_by(Subscription.updated_at.desc(), Subscription.id.desc())
        )
    )


def sync_user_plan(
    user_id: int, now: datetime, why: str, details: dict[str, Any] | None = None
) -> CreditTransaction | None:
    """Make the user Pro exactly while one of their subscriptions gives access.

    Locks the user's row before reading the subscriptions, so concurrent events and sweeps
    settle on the latest state. Returns the ledger row of the change, or None if the plan
    stays. Raises UserNotFound.
    """
    credits.lock_user(user_id)
    pro = any(access.entitled(subscription, now) for subscription in user_subscriptions(user_id))
    reason = f"{'Pro started' if pro else 'Back to the free plan'}: {why}"
    return credits.change_plan(user_id, "pro" if pro else "free", reason, details=details)


def get_subscription_status(user_id: int, now: datetime | None = None) -> SubscriptionStatus:
    """The user's plan and the Pro subscription that matters now (one giving access, else the
    latest). Subscriptions to other products are not shown. Raises UserNotFound."""
    now = now or utcnow()
    user = db.session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    mine = [
        subscription
        for subscription in user_subscriptions(user_id)
        if is_pro_product(subscription.product_id)
    ]
    # The user's plan is what the sweep and the events settled; a subscription shows as
    # giving access only while it does.
    giving = [
        subscription for subscription in mine if user.is_pro and access.entitled(subscription, now)
    ]
    current = next(iter(giving or mine), None)
    if current is None:
        return SubscriptionStatus(
            user.subscription_status, None, None, False, None, None, False, False, False, None
        )
    flagged = bool(current.staff_flag)
    plan = plan_for_product(current.product_id)
    running = current.status in access.UNBOUNDED_STATUSES and not flagged
    return SubscriptionStatus(
        plan=user.subscription_status,
        subscription=current,
        plan_info=plan,
        entitled=bool(giving),
        renews_at=current.current_period_end if running else None,
        ends_at=(
            access.access_of(current).until if current.status in access.BOUNDED_STATUSES else None
        ),
        can_cancel=not flagged and current.status in access.UNBOUNDED_STATUSES | {"past_due"},
        can_resume=not flagged
        and (
            current.status == "paused"
            or (current.status == "scheduled_cancel" and current in giving)
        ),
        can_manage_billing=current.creem_customer_id is not None,
        switch_to=other_plan(plan) if running and plan is not None else None,
    )


# -- applying a snapshot ---------------------------------------------------------------------


def lock_subscription_row(creem_subscription_id: str) -> Subscription | None:
    return lock_one(Subscription, Subscription.creem_subscription_id == creem_subscription_id)


def _lock_recorded_row(creem_subscription_id: str) -> Subscription:
    """`lock_subscription_row` for a subscription this transaction has recorded (created or
    applied). Raises NoSubscription."""
    row = lock_subscription_row(creem_subscription_id)
    if row is None:
        raise NoSubscription(f"No subscription {creem_subscription_id!r}.")
    return row


def _known_user(snapshot: SubscriptionSnapshot) -> int | None:
    """The user a subscription belongs to: our checkout's metadata, else the Creem customer
    of one of their earlier subscriptions; None when neither is known."""
    if snapshot.metadata_user_id is not None:
        user_id = db.session.execute(
            select(User.id).where(User.id == int(snapshot.metadata_user_id))
        ).scalar_one_or_none()
        if user_id is not None:
            return user_id
    if snapshot.customer_id:
        return db.session.execute(
            select(Subscription.user_id)
            .where(Subscription.creem_customer_id == snapshot.customer_id)
            .order_by(Subscription.id)
            .limit(1)
        ).scalar_one_or_none()
    return None


def _create_row(snapshot: SubscriptionSnapshot, user_id: int) -> Subscription:
    db.session.execute(
        insert(Subscription)
        .values(
            user_id=user_id,
            creem_subscription_id=snapshot.subscription_id,
            creem_customer_id=snapshot.customer_id,
            product_id=snapshot.product_id or "",
            status=snapshot.status or "incomplete",
        )
        .on_conflict_do_nothing(index_elements=["creem_subscription_id"])
    )
    return _lock_recorded_row(snapshot.subscription_id)


def _ambiguity(
    snapshot: SubscriptionSnapshot, announced: str | None, row: Subscription, at: datetime
) -> str | None:
    """Why the snapshot cannot be applied as it is (see the module doc), or None."""
    if announced is not None and snapshot.status is not None and snapshot.status != announced:
        return f"the event says {announced} but the subscription says {snapshot.status}"
    status = snapshot.status or announced
    if status in access.BOUNDED_STATUSES and snapshot.period_end is None:
        return f"a {status} subscription without its period end"
    if row.last_event_at is not None and at == row.last_event_at and status != row.status:
        return "two snapshots of the same moment disagree"
    return None


def _reread(snapshot: SubscriptionSnapshot, client: CreemClient | None) -> SubscriptionSnapshot:
    """The subscription as Creem's API has it now.

    Raises WebhookEventUnresolved (Creem does not know it), CreemError (the job is retried).
    """
    try:
        remote = (client or creem_client()).get_subscription(snapshot.subscription_id)
    except CreemError as exc:
        if exc.creem_status == 404:
            raise WebhookEventUnresolved(
                f"Creem does not know subscription {snapshot.subscription_id!r}."
            ) from exc
        raise
    if remote.metadata_user_id is None and snapshot.metadata_user_id is not None:
        remote = replace(remote, metadata_user_id=snapshot.metadata_user_id)
    return remote


def apply_snapshot(
    snapshot: SubscriptionSnapshot,
    at: datetime,
    source: str,
    *,
    announced: str | None = None,
    event_id: str | None = None,
    now: datetime | None = None,
    client: CreemClient | None = None,
) -> str:
    """Apply one snapshot of a subscription taken at `at`, then sync its user's plan.

    `announced` is the status the event type announces. Returns "applied", "applied_from_api"
    (the event was ambiguous and Creem's API answered), "stale" (a newer snapshot was applied)
    or "foreign_product" (stored, gives no Pro). Raises WebhookEventUnresolved (no user is
    known for a new subscription, even at Creem), CreemError (a needed re-read failed),
    UserNotFound.
    """
    now = now or utcnow()
    row = lock_subscription_row(snapshot.subscription_id)
    outcome = "applied"
    if row is None:
        user_id = _known_user(snapshot)
        if user_id is None or not snapshot.product_id:
            log.info(
                "re-reading Creem subscription %s: a new subscription without a known "
                "user or product",
                snapshot.subscription_id,
            )
            snapshot, outcome = _reread(snapshot, client), "applied_from_api"
            at = max(at, snapshot.updated_at or at)
            user_id = _known_user(snapshot)
        if user_id is None:
            raise WebhookEventUnresolved(
                "No user is known for this subscription (no user_id "
                "in its metadata, at Creem either, and an unknown "
                "customer)."
            )
        row = _create_row(snapshot, user_id)
    if row.last_event_at is not None and at < row.last_event_at:
        return "stale"
    reason = None if outcome == "applied_from_api" else _ambiguity(snapshot, announced, row, at)
    if reason is not None:
        log.info("re-reading Creem subscription %s: %s", snapshot.subscription_id, reason)
        snapshot, outcome = _reread(snapshot, client), "applied_from_api"
        at = max(at, snapshot.updated_at or at)
    status = snapshot.status or announced or row.status
    row.status = status
    row.product_id = snapshot.product_id or row.product_id
    row.creem_customer_id = snapshot.customer_id or row.creem_customer_id
    row.current_period_start = snapshot.period_start or row.current_period_start
    row.current_period_end = snapshot.period_end or row.current_period_end
    row.canceled_at = snapshot.canceled_at
    row.last_event_at, row.last_event_id = at, event_id or row.last_event_id
    _set_access_end(row, now)
    db.session.flush()
    if not is_pro_product(row.product_id):
        log.warning(
            "Creem subscription %s (user %s) is for product %s, not a Pro plan: "
            "stored, gives no Pro",
            row.creem_subscription_id,
            row.user_id,
            row.product_id,
        )
        outcome = "foreign_product"
    why = "subscription resumed" if source == "api.resume" else _WHY[status]
    sync_user_plan(row.user_id, now, why, _details(row, source, event_id))
    if outcome != "foreign_product":
        notifications.on_subscription_applied(row)
    return outcome


def _set_access_end(row: Subscription, now: datetime) -> None:
    """The moment the sweep must look at the row again (None when it need not)."""
    end = access.access_end(row)
    row.access_ends_at = end if end is not None and end > now else None


def _details(subscription: Subscription, source: str, event_id: str | None) -> dict[str, Any]:
    details = {
        "subscription_id": subscription.creem_subscription_id,
        "product_id": subscription.product_id,
        "creem_status": subscription.status,
        "source": source,
    }
    if event_id:
        details["event_id"] = event_id
    return details


def apply_flag(
    flag: str,
    snapshot: SubscriptionSnapshot | None,
    at: datetime,
    *,
    event_id: str,
    full: bool = True,
    now: datetime | None = None,
    client: CreemClient | None = None,
) -> str:
    """A full refund or a dispute: no more Pro from that subscription; an admin should look.

    The newest flag wins (a refund then a dispute, in either order, leaves "dispute"); a
    partial refund changes nothing. Returns "flagged", "partial_refund" or "stale_flag".
    Raises WebhookEventUnresolved (no subscription, or an unknown one nobody owns),
    CreemError, UserNotFound.
    """
    now = now or utcnow()
    if not full:
        return "partial_refund"
    if snapshot is None:
        raise WebhookEventUnresolved(f"The {flag} names no subscription.")
    row = lock_subscription_row(snapshot.subscription_id)
    if row is None:
        owned = snapshot
        if _known_user(owned) is None or not owned.product_id or owned.status is None:
            owned = _reread(snapshot, client)
        user_id = _known_user(owned)
        if user_id is None:
            raise WebhookEventUnresolved(f"The {flag} is for a subscription nobody owns.")
        row = _create_row(owned, user_id)
        if row.last_event_at is None:
            # Ours, or one no snapshot was applied to yet: the flag's own snapshot fills it
            # in; a row another worker created meanwhile keeps its newer facts.
            row.status = owned.status or row.status
            row.current_period_start = owned.period_start or row.current_period_start
            row.current_period_end = owned.period_end or row.current_period_end
            row.last_event_at = owned.updated_at
    if row.flagged_at is not None and at < row.flagged_at:
        return "stale_flag"
    row.staff_flag, row.flagged_at = flag, at
    log.warning(
        "Creem %s on subscription %s (user %s): Pro removed, flagged for the admins",
        flag,
        row.creem_subscription_id,
        row.user_id,
    )
    _set_access_end(row, now)
    db.session.flush()
    sync_user_plan(row.user_id, now, _WHY[flag], _details(row, f"creem {flag}", event_id))
    return "flagged"


# -- actions the user takes ------------------------------------------------------------------


def _apply_remote(remote: SubscriptionSnapshot, action: str, now: datetime | None) -> Subscription:
    """Record the subscription as Creem answered an action, like an event would."""
    now = now or utcnow()
    apply_snapshot(remote, remote.updated_at or now, f"api.{action}", now=now)
    return _lock_recorded_row(remote.subscription_id)


def _ask_creem(
    action: str,
    call: Callable[[CreemClient], SubscriptionSnapshot],
    client: CreemClient | None,
    now: datetime | None,
) -> Subscription:
    """Make `call` to Creem (`client`, else the app's) and record the subscription as Creem
    answered. Raises SubscriptionActionNotAllowed when Creem refuses, CreemError.
    """
    creem = client or creem_client()
    try:
        remote = call(creem)
    except CreemError as exc:
        if exc.creem_status in (400, 404, 409, 422):
            raise SubscriptionActionNotAllowed(
                "The payment provider did not allow that for your subscription."
            ) from exc
        raise
    return _apply_remote(remote, action, now)


def cancel_subscription(
    user_id: int,
    mode: str = "scheduled",
    now: datetime | None = None,
    client: CreemClient | None = None,
) -> Subscription:
    """Cancel the user's subscription at Creem and record Creem's answer; Pro stays until the
    paid period ends.

    Raises ValidationFailed (unknown mode), NoSubscription, SubscriptionActionNotAllowed
    (nothing to cancel, or Creem refused), CreemError.
    """
    if mode not in CANCEL_MODES:
        raise ValidationFailed(f"mode must be one of: {', '.join(CANCEL_MODES)}.")
    status = get_subscription_status(user_id, now)
    subscription = status.subscription
    if subscription is None:
        raise NoSubscription()
    if not status.can_cancel:
        raise SubscriptionActionNotAllowed(
            "Your subscription is not active, so there is nothing to cancel."
        )
    return _ask_creem(
        "cancel",
        lambda creem: creem.cancel_subscription(subscription.creem_subscription_id, mode),
        client,
        now,
    )


def resume_subscription(
    user_id: int, now: datetime | None = None, client: CreemClient | None = None
) -> Subscription:
    """Resume a subscription that is scheduled to cancel or paused, where Creem allows it.

    Raises NoSubscription, SubscriptionActionNotAllowed, CreemError.
    """
    status = get_subscription_status(user_id, now)
    subscription = status.subscription
    if subscription is None:
        raise NoSubscription()
    if not status.can_resume:
        raise SubscriptionActionNotAllowed(
            "Only a subscription that is canceled for the end "
            "of its period, or paused, can be resumed."
        )
    return _ask_creem(
        "resume",
        lambda creem: creem.resume_subscription(subscription.creem_subscription_id),
        client,
        now,
    )


def switch_plan(
    user_id: int, plan_key: str, now: datetime | None = None, client: CreemClient | None = None
) -> Subscription:
    """Move the user's running subscription to the other plan (monthly <-> yearly) through
    Creem's upgrade endpoint; Creem charges the prorated difference at once.

    Raises UnknownPlan, NoSubscription, SubscriptionActionNotAllowed (not running, already on
    that plan, or Creem refused), CreemError.
    """
    target = get_plan(plan_key)
    status = get_subscription_status(user_id, now)
    subscription = status.subscription
    if subscription is None:
        raise NoSubscription()
    if status.switch_to is None:
        raise SubscriptionActionNotAllowed("Only a running subscription can change plans.")
    if status.switch_to.key != target.key:
        raise SubscriptionActionNotAllowed(f"You are on {target.name} already.")
    return _ask_creem(
        "switch",
        lambda creem: creem.upgrade_subscription(
            subscription.creem_subscription_id, target.product_id, SWITCH_BEHAVIOR
        ),
        client,
        now,
    )


def customer_portal_url(user_id: int, client: CreemClient | None = None) -> str:
    """A link to Creem's billing portal for the user. Raises NoSubscription, CreemError."""
    subscription = get_subscription_status(user_id).subscription
    if subscription is None or subscription.creem_customer_id is None:
        raise NoSubscription("You have no billing account yet: subscribe first.")
    return (client or creem_client()).customer_portal_url(subscription.creem_customer_id)


# -- admin -----------------------------------------------------------------------------------


def clear_flag(creem_subscription_id: str, now: datetime | None = None) -> Subscription:
    """An admin cleared a refund or dispute flag: the subscription's status counts again.

    Raises NoSubscription.
    """
    now = now or utcnow()
    subscription = lock_subscription_row(creem_subscription_id)
    if subscription is None:
        raise NoSubscription(f"No subscription {creem_subscription_id!r}.")
    subscription.staff_flag, subscription.flagged_at = None, None
    _set_access_end(subscription, now)
    db.session.flush()
    sync_user_plan(
        subscription.user_id, now, "flag cleared by an admin", _details(subscription, "admin", None)
    )
    return subscription


def flagged_subscriptions() -> list[Subscription]:
    """Subscriptions flagged for the admins (refunds and disputes), newest first."""
    return list(
        db.session.execute(
            select(Subscription)
            .where(Subscription.staff_flag.is_not(None))
            .order_by(Subscription.flagged_at.desc())
        ).scalars()
    )


def foreign_subscriptions() -> list[Subscription]:
    """Subscriptions to products that are not a configured Pro plan (they give no Pro),
    newest first: admins see them in `flask billing foreign`."""
    pro_products = [plan.product_id for plan in plans()]
    return list(
        db.session.execute(
            select(Subscription)
            .where(Subscription.product_id.not_in(pro_products))
            .order_by(Subscription.created_at.desc(), Subscription.id.desc())
        ).scalars()
    )


# -- the period-end sweep --------------------------------------------------------------------


def downgrade_lapsed(now: datetime | None = None, limit: int = 500) -> list[int]:
    """End every time-bounded access that ran out by `now` (a cancellation reached its period
    end, a past-due grace period is over) and downgrade those users who have no other access.

    Returns the ids of the users it moved to the free plan. Safe to run twice or alongside
    the webhook jobs: each subscription is handled under its row lock, each user under theirs.
    """
    now = now or utcnow()
    due = (
        db.session.execute(
            select(Subscription.creem_subscription_id)
            .where(Subscription.access_ends_at <= now)
            .order_by(Subscription.access_ends_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    downgraded = []
    for creem_subscription_id in due:
        subscription = lock_subscription_row(creem_subscription_id)
        if (
            subscription is None
            or subscription.access_ends_at is None
            or (subscription.access_ends_at > now)
        ):
            continue
        why = (
            "past-due grace period ended"
            if subscription.status == "past_due"
            else "subscription ended at the end of its period"
        )
        subscription.access_ends_at = None
        db.session.flush()
        entry = sync_user_plan(
            subscription.user_id, now, why, _details(subscription, "period_end_sweep", None)
        )
        if entry is not None:
            downgraded.append(subscription.user_id)
    return downgraded
