"""Subscriptions with Creem: plans, checkout, cancel and resume, the signed webhooks, and
who is Pro.

Access comes from Creem's webhooks only (the success redirect is for the user's experience).
Every event is stored once (`record_webhook`) and applied by a job (`process_event`):
subscription events are snapshots of the subscription, applied only if they are not older than
the last event applied to it (`subscriptions.last_event_at`), so replays and out-of-order
deliveries cannot roll the state back.

The access rules live in one place, `_entitled` and `_access_end`:
- active (paid) and trialing → Pro;
- scheduled_cancel, and canceled at the period end → Pro until current_period_end, then free
  (`downgrade_lapsed`, run by a periodic job, does the downgrade);
- past_due → Pro for PAST_DUE_GRACE_DAYS after it became past due;
- expired, unpaid, paused, incomplete, canceled immediately → free;
- a full refund or a dispute → free, and the subscription is flagged for staff.
A user is Pro while any of their subscriptions gives access. Every change of
`users.subscription_status` goes through `credits.change_plan`, which writes an amount-0 ledger
row with the reason, and keeps the credits the user had (the analytics events
subscription_upgraded / subscription_canceled follow from that ledger row).

Services flush and never commit: the caller (a request, a job or a command) owns the
transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from credit_app.creem import (
    CANCEL_MODES,
    CreemClient,
    CreemSubscription,
    object_id,
    parse_timestamp,
)
from credit_app.errors import (
    AlreadySubscribed,
    CreemError,
    InvalidWebhookPayload,
    InvalidWebhookSignature,
    NoSubscription,
    SubscriptionActionNotAllowed,
    UnknownPlan,
    UserNotFound,
    ValidationFailed,
    WebhookEventNotFound,
    WebhookEventUnresolved,
)
from credit_app.extensions import db
from credit_app.features import FEATURES
from credit_app.models import (
    CREEM_STATUSES,
    CreditTransaction,
    Subscription,
    User,
    WebhookEvent,
)
from credit_app.services import credits, notifications
from credit_app.services.credits import utcnow

log = logging.getLogger(__name__)

ACTIVE_STATUSES = frozenset({"active", "trialing"})
BOUNDED_STATUSES = frozenset({"scheduled_cancel", "canceled", "past_due"})
# The status a subscription event puts the subscription in; `subscription.update` and
# `checkout.completed` carry theirs in the object.
EVENT_STATUSES: dict[str, str] = {
    "subscription.active": "active",
    "subscription.paid": "active",
    "subscription.trialing": "trialing",
    "subscription.scheduled_cancel": "scheduled_cancel",
    "subscription.canceled": "canceled",
    "subscription.past_due": "past_due",
    "subscription.unpaid": "unpaid",
    "subscription.expired": "expired",
    "subscription.paused": "paused",
}
SNAPSHOT_EVENTS = frozenset({*EVENT_STATUSES, "subscription.update", "checkout.completed"})
FLAG_EVENTS: dict[str, str] = {"refund.created": "refund", "dispute.created": "dispute"}
REDIRECT_KEYS: tuple[str, ...] = ("checkout_id", "order_id", "customer_id", "subscription_id",
                                  "product_id", "request_id")
MAX_ERROR_LENGTH = 2000
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
class Plan:
    key: str
    product_id: str
    name: str
    price: str
    interval: str


@dataclass(frozen=True)
class CheckoutStart:
    checkout_id: str
    checkout_url: str
    request_id: str


@dataclass(frozen=True)
class SubscriptionStatus:
    """What the subscription page shows: the user's plan and their current subscription."""

    plan: str
    subscription: Subscription | None
    plan_info: Plan | None
    entitled: bool
    renews_at: datetime | None
    ends_at: datetime | None
    can_cancel: bool
    can_resume: bool
    can_manage_billing: bool

    @property
    def is_pro(self) -> bool:
        return self.plan == "pro"

    @property
    def status(self) -> str | None:
        return self.subscription.status if self.subscription else None

    @property
    def flagged(self) -> bool:
        return bool(self.subscription and self.subscription.staff_flag)


@dataclass(frozen=True)
class _Snapshot:
    """A subscription's state as one event or API answer describes it."""

    subscription_id: str
    status: str
    product_id: str | None
    customer_id: str | None
    period_start: datetime | None
    period_end: datetime | None
    canceled_at: datetime | None
    metadata: dict[str, Any]


# -- plans ---------------------------------------------------------------------------------


def plans(config: Mapping[str, Any] | None = None) -> list[Plan]:
    """Pro monthly and Pro yearly, from configuration (Creem product ids, names, prices)."""
    config = config or current_app.config
    return [
        Plan("pro_monthly", config["CREEM_PRODUCT_PRO_MONTHLY"], config["PRO_MONTHLY_NAME"],
             config["PRO_MONTHLY_PRICE"], "month"),
        Plan("pro_yearly", config["CREEM_PRODUCT_PRO_YEARLY"], config["PRO_YEARLY_NAME"],
             config["PRO_YEARLY_PRICE"], "year"),
    ]


def get_plan(key: str) -> Plan:
    """Raises UnknownPlan."""
    for plan in plans():
        if plan.key == key:
            return plan
    raise UnknownPlan(f"Unknown plan {key!r}; expected one of: "
                      f"{', '.join(plan.key for plan in plans())}.")


def plan_for_product(product_id: str | None) -> Plan | None:
    return next((plan for plan in plans() if plan.product_id == product_id), None)


def creem_client() -> CreemClient:
    """The app's client for the configured Creem API (or the local stand-in), shared by the
    process's threads and made again if the settings change."""
    config = current_app.config
    settings = (config["CREEM_API_URL"], config["CREEM_API_KEY"],
                config["CREEM_TIMEOUT_SECONDS"])
    cached = current_app.extensions.get("creem_client")
    if cached is None or cached[0] != settings:
        cached = (settings, CreemClient.from_config(config))
        current_app.extensions["creem_client"] = cached
    return cached[1]


# -- access rules --------------------------------------------------------------------------


def _entitled(subscription: Subscription, now: datetime) -> bool:
    """Whether this subscription makes its user Pro at `now`."""
    if subscription.staff_flag:
        return False
    if subscription.status in ACTIVE_STATUSES:
        return True
    if subscription.status in BOUNDED_STATUSES:
        return subscription.access_ends_at is not None and now < subscription.access_ends_at
    return False


def _access_end(subscription: Subscription) -> datetime | None:
    """When a time-bounded access ends (None: unbounded for active, none at all otherwise)."""
    if subscription.staff_flag:
        return None
    if subscription.status == "scheduled_cancel" or (
            subscription.status == "canceled" and subscription.cancel_at_period_end):
        return subscription.current_period_end
    if subscription.status == "past_due" and subscription.past_due_since is not None:
        grace = timedelta(days=current_app.config["PAST_DUE_GRACE_DAYS"])
        return subscription.past_due_since + grace
    return None


def _user_subscriptions(user_id: int) -> list[Subscription]:
    return list(db.session.execute(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.updated_at.desc(), Subscription.id.desc())
        .execution_options(populate_existing=True)
    ).scalars())


def sync_user_plan(user_id: int, now: datetime, why: str,
                   details: dict[str, Any] | None = None) -> CreditTransaction | None:
    """Make the user Pro exactly while one of their subscriptions gives access.

    Locks the user's row before reading the subscriptions, so concurrent events and sweeps
    settle on the latest state. Returns the ledger row of the change, or None if the plan
    stays. Raises UserNotFound.
    """
    credits.lock_user(user_id)
    pro = any(_entitled(subscription, now) for subscription in _user_subscriptions(user_id))
    target = "pro" if pro else "free"
    reason = f"{'Pro started' if pro else 'Back to the free plan'}: {why}"
    return credits.change_plan(user_id, target, reason, details=details)


def get_subscription_status(user_id: int, now: datetime | None = None) -> SubscriptionStatus:
    """The user's plan and the subscription that matters now (one giving access, else the
    latest). Raises UserNotFound."""
    now = now or utcnow()
    user = db.session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    subscriptions = _user_subscriptions(user_id)
    entitled = [subscription for subscription in subscriptions if _entitled(subscription, now)]
    current = (entitled or subscriptions or [None])[0]
    if current is None:
        return SubscriptionStatus(user.subscription_status, None, None, False, None, None,
                                  False, False, False)
    flagged = bool(current.staff_flag)
    renews = current.status in ACTIVE_STATUSES and not current.cancel_at_period_end
    return SubscriptionStatus(
        plan=user.subscription_status,
        subscription=current,
        plan_info=plan_for_product(current.product_id),
        entitled=bool(entitled),
        renews_at=current.current_period_end if renews and not flagged else None,
        ends_at=current.access_ends_at if current.status in BOUNDED_STATUSES else None,
        can_cancel=not flagged and current.status in ACTIVE_STATUSES | {"past_due"},
        can_resume=not flagged and (current.status == "paused" or (
            current.status == "scheduled_cancel" and _entitled(current, now))),
        can_manage_billing=current.creem_customer_id is not None,
    )


# -- checkout, cancel, resume, portal ------------------------------------------------------


def start_checkout(user: User, plan: str, return_to: str | None,
                   client: CreemClient | None = None) -> CheckoutStart:
    """Open a Creem checkout for `plan`; after paying, the user comes back to the feature
    `return_to` (a feature key; anything else brings them back to the subscription page).

    Raises UnknownPlan, AlreadySubscribed (the user is Pro), CreemError.
    """
    chosen = get_plan(plan)
    if user.is_pro:
        raise AlreadySubscribed("You already have Pro: manage it on this page.")
    feature = return_to if return_to in FEATURES else None
    request_id = f"checkout-{user.id}-{uuid.uuid4().hex}"
    metadata = {"user_id": str(user.id), "plan": chosen.key, "feature": feature or ""}
    success_url = url_for("billing.checkout_return", feature=feature, _external=True)
    creem = client or creem_client()
    checkout = creem.create_checkout(chosen.product_id, request_id, success_url,
                                     customer_email=user.email, metadata=metadata)
    return CheckoutStart(checkout.id, checkout.checkout_url, request_id)


def cancel_subscription(user_id: int, mode: str = "scheduled", now: datetime | None = None,
                        client: CreemClient | None = None) -> Subscription:
    """Cancel the user's subscription at the period end (or now, `mode="immediate"`) at Creem
    and record Creem's answer; Pro stays until the period ends.

    Raises ValidationFailed (unknown mode), NoSubscription, SubscriptionActionNotAllowed
    (nothing to cancel, or Creem refused), CreemError.
    """
    if mode not in CANCEL_MODES:
        raise ValidationFailed(f"mode must be one of: {', '.join(CANCEL_MODES)}.")
    status = get_subscription_status(user_id, now)
    if status.subscription is None:
        raise NoSubscription()
    if not status.can_cancel:
        raise SubscriptionActionNotAllowed("Your subscription is not active, so there is "
                                           "nothing to cancel.")
    creem = client or creem_client()
    remote = _refusal_as_not_allowed(
        lambda: creem.cancel_subscription(status.subscription.creem_subscription_id, mode))
    return _apply_remote(remote, "cancel", now)


def resume_subscription(user_id: int, now: datetime | None = None,
                        client: CreemClient | None = None) -> Subscription:
    """Resume a subscription that is scheduled to cancel or paused, where Creem allows it.

    Raises NoSubscription, SubscriptionActionNotAllowed, CreemError.
    """
    status = get_subscription_status(user_id, now)
    if status.subscription is None:
        raise NoSubscription()
    if not status.can_resume:
        raise SubscriptionActionNotAllowed("Only a subscription that is canceled for the end "
                                           "of its period, or paused, can be resumed.")
    creem = client or creem_client()
    remote = _refusal_as_not_allowed(
        lambda: creem.resume_subscription(status.subscription.creem_subscription_id))
    return _apply_remote(remote, "resume", now)


def customer_portal_url(user_id: int, client: CreemClient | None = None) -> str:
    """A link to Creem's billing portal for the user. Raises NoSubscription, CreemError."""
    status = get_subscription_status(user_id)
    if status.subscription is None or not status.can_manage_billing:
        raise NoSubscription("You have no billing account yet: subscribe first.")
    return (client or creem_client()).customer_portal_url(
        status.subscription.creem_customer_id)


def _refusal_as_not_allowed(call: Callable[[], CreemSubscription]) -> CreemSubscription:
    try:
        return call()
    except CreemError as exc:
        if exc.creem_status in (400, 404, 409, 422):
            raise SubscriptionActionNotAllowed(
                "The payment provider did not allow that for your subscription.") from exc
        raise


def _apply_remote(remote: CreemSubscription, action: str, now: datetime | None) -> Subscription:
    """Record the subscription as Creem answered a cancel or resume, like an event would."""
    now = now or utcnow()
    snapshot = _Snapshot(remote.id, _known_status(remote.status), remote.product_id,
                         remote.customer_id, remote.current_period_start,
                         remote.current_period_end, remote.canceled_at, remote.metadata)
    subscription = _locked_subscription(snapshot)
    _apply_snapshot(subscription, snapshot, f"api.{action}", None, remote.updated_at or now, now)
    return subscription


# -- the success redirect ------------------------------------------------------------------


def verify_redirect_signature(params: Iterable[tuple[str, str]], api_key: str) -> bool:
    """Check the signature Creem puts on the success redirect (the user's experience only).

    `params` are the query parameters in the order they arrived.
    """
    pairs = list(params)
    signature = next((value for key, value in pairs if key == "signature"), "")
    signed = [f"{key}={value}" for key, value in pairs if key in REDIRECT_KEYS and value]
    if not signature or not signed:
        return False
    expected = hashlib.sha256("|".join([*signed, f"salt={api_key}"]).encode()).hexdigest()
    return hmac.compare_digest(expected, signature.lower())


# -- webhooks ------------------------------------------------------------------------------


def verify_signature(raw_body: bytes, signature: str | None, secret: str) -> None:
    """Check `creem-signature`: hex HMAC-SHA256 of the raw body, compared in constant time.

    Raises InvalidWebhookSignature.
    """
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected.encode(),
                                                signature.strip().lower().encode()):
        raise InvalidWebhookSignature()


def _parse_envelope(raw_body: bytes) -> tuple[str, str, datetime, dict[str, Any]]:
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidWebhookPayload("The webhook body is not JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidWebhookPayload()
    event_id, event_type = payload.get("id"), payload.get("eventType")
    created_at, obj = payload.get("created_at"), payload.get("object")
    if not (isinstance(event_id, str) and 1 <= len(event_id) <= 100):
        raise InvalidWebhookPayload("The event has no valid id.")
    if not (isinstance(event_type, str) and 1 <= len(event_type) <= 60):
        raise InvalidWebhookPayload("The event has no valid eventType.")
    if isinstance(created_at, bool) or not isinstance(created_at, int) or created_at <= 0:
        raise InvalidWebhookPayload("The event's created_at must be epoch milliseconds.")
    if not isinstance(obj, dict):
        raise InvalidWebhookPayload("The event has no object.")
    return event_id, event_type, parse_timestamp(created_at), payload


def record_webhook(raw_body: bytes, signature: str | None) -> tuple[WebhookEvent, bool]:
    """Verify and store a webhook delivery; returns the event and whether it is new.

    A delivery of an event already stored changes nothing. Raises InvalidWebhookSignature
    (nothing is stored), InvalidWebhookPayload.
    """
    verify_signature(raw_body, signature, current_app.config["CREEM_WEBHOOK_SECRET"])
    event_id, event_type, created_at, payload = _parse_envelope(raw_body)
    inserted = db.session.execute(
        insert(WebhookEvent)
        .values(event_id=event_id, event_type=event_type, payload=payload,
                event_created_at=created_at)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.id)
    ).scalar_one_or_none()
    event = db.session.execute(
        select(WebhookEvent).where(WebhookEvent.event_id == event_id)
    ).scalar_one()
    return event, inserted is not None


def _locked_event(event_id: str) -> WebhookEvent:
    event = db.session.execute(
        select(WebhookEvent)
        .where(WebhookEvent.event_id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if event is None:
        raise WebhookEventNotFound(f"No webhook event {event_id!r}.")
    return event


def process_event(event_id: str, now: datetime | None = None) -> str:
    """Apply a stored event once; a repeat returns "already_processed" and changes nothing.

    Returns the outcome ("applied", "stale", "flagged", "ignored", ...). Raises
    WebhookEventNotFound, WebhookEventUnresolved, InvalidWebhookPayload, UserNotFound.
    """
    now = now or utcnow()
    event = _locked_event(event_id)
    if event.processed_at is not None:
        return "already_processed"
    event.attempts += 1
    outcome = handle_webhook_event(event.payload, now)
    event.processed_at, event.outcome, event.last_error = now, outcome, None
    db.session.flush()
    return outcome


def record_failure(event_id: str, error: BaseException) -> None:
    """Note a failed attempt on the event (its count and the error); call after a rollback."""
    event = db.session.execute(
        select(WebhookEvent).where(WebhookEvent.event_id == event_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if event is None:
        return
    event.attempts += 1
    event.last_error = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
    db.session.flush()


def reset_event(event_id: str) -> WebhookEvent:
    """Mark a stored event unprocessed so it can be run again. Raises WebhookEventNotFound."""
    event = _locked_event(event_id)
    event.processed_at, event.outcome = None, None
    db.session.flush()
    return event


def handle_webhook_event(payload: Mapping[str, Any], now: datetime | None = None) -> str:
    """Apply one Creem event (an envelope) to the subscriptions and the user's plan.

    Returns the outcome. Raises InvalidWebhookPayload, WebhookEventUnresolved (no user is
    known for the subscription), UserNotFound.
    """
    now = now or utcnow()
    event_id, event_type = str(payload.get("id")), str(payload.get("eventType"))
    created_at = _event_time(payload.get("created_at"))
    obj = payload.get("object")
    if not isinstance(obj, dict):
        raise InvalidWebhookPayload("The event has no object.")
    if event_type in SNAPSHOT_EVENTS:
        snapshot = _snapshot_from_event(event_type, obj)
        if snapshot is None:
            return "ignored"
        subscription = _locked_subscription(snapshot)
        return _apply_snapshot(subscription, snapshot, event_type, event_id, created_at, now)
    if event_type in FLAG_EVENTS:
        return _apply_flag(FLAG_EVENTS[event_type], obj, event_id, created_at, now)
    log.info("ignoring Creem event %s of type %s", event_id, event_type)
    return "ignored"


def _event_time(value: Any) -> datetime:
    try:
        moment = parse_timestamp(value)
    except ValueError:
        moment = None
    if moment is None:
        raise InvalidWebhookPayload("The event's created_at must be epoch milliseconds.")
    return moment


def _known_status(status: Any) -> str:
    if status not in CREEM_STATUSES:
        raise InvalidWebhookPayload(f"Unknown subscription status {status!r}.")
    return status


def _snapshot_from_event(event_type: str, obj: dict[str, Any]) -> _Snapshot | None:
    metadata: dict[str, Any] = {}
    source = obj
    if event_type == "checkout.completed":
        source = obj.get("subscription")
        if not isinstance(source, dict):
            return None
        metadata.update(obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {})
    try:
        remote = CreemSubscription.from_payload(source)
    except CreemError as exc:
        raise InvalidWebhookPayload(exc.message) from None
    metadata.update(remote.metadata)
    status = EVENT_STATUSES.get(event_type) or _known_status(remote.status)
    customer = remote.customer_id or object_id(obj.get("customer"))
    product = remote.product_id or object_id(obj.get("product"))
    return _Snapshot(remote.id, status, product, customer, remote.current_period_start,
                     remote.current_period_end, remote.canceled_at, metadata)


def _resolve_user(metadata: Mapping[str, Any], customer_id: str | None) -> int:
    """The user a new subscription belongs to: our checkout's metadata, else the Creem customer
    of one of their earlier subscriptions. Raises WebhookEventUnresolved."""
    raw = metadata.get("user_id")
    if isinstance(raw, int | str) and str(raw).isdigit():
        user_id = db.session.execute(
            select(User.id).where(User.id == int(raw))
        ).scalar_one_or_none()
        if user_id is not None:
            return user_id
    if customer_id:
        user_id = db.session.execute(
            select(Subscription.user_id).where(Subscription.creem_customer_id == customer_id)
            .limit(1)
        ).scalar_one_or_none()
        if user_id is not None:
            return user_id
    raise WebhookEventUnresolved("No user is known for this subscription (no user_id in its "
                                 "metadata and an unknown customer).")


def _lock_subscription_row(creem_subscription_id: str) -> Subscription | None:
    return db.session.execute(
        select(Subscription)
        .where(Subscription.creem_subscription_id == creem_subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _locked_subscription(snapshot: _Snapshot) -> Subscription:
    """The subscription's row, locked; created (for its user) if this is its first event."""
    subscription = _lock_subscription_row(snapshot.subscription_id)
    if subscription is not None:
        return subscription
    user_id = _resolve_user(snapshot.metadata, snapshot.customer_id)
    db.session.execute(
        insert(Subscription)
        .values(user_id=user_id, creem_subscription_id=snapshot.subscription_id,
                creem_customer_id=snapshot.customer_id, product_id=snapshot.product_id or "",
                status=snapshot.status)
        .on_conflict_do_nothing(index_elements=["creem_subscription_id"])
    )
    return _lock_subscription_row(snapshot.subscription_id)


def _apply_snapshot(subscription: Subscription, snapshot: _Snapshot, source: str,
                    event_id: str | None, event_time: datetime, now: datetime) -> str:
    """Set the subscription to the snapshot unless a newer event was applied already."""
    if subscription.last_event_at is not None and event_time < subscription.last_event_at:
        return "stale"
    previous = subscription.status
    status = snapshot.status
    subscription.status = status
    subscription.product_id = snapshot.product_id or subscription.product_id
    subscription.creem_customer_id = snapshot.customer_id or subscription.creem_customer_id
    subscription.current_period_start = (snapshot.period_start
                                         or subscription.current_period_start)
    subscription.current_period_end = snapshot.period_end or subscription.current_period_end
    subscription.canceled_at = snapshot.canceled_at
    if status == "scheduled_cancel":
        subscription.cancel_at_period_end = True
    elif status in ACTIVE_STATUSES:
        subscription.cancel_at_period_end = False
    if status != "past_due":
        subscription.past_due_since = None
    elif previous != "past_due" or subscription.past_due_since is None:
        subscription.past_due_since = event_time
    subscription.access_ends_at = _access_end(subscription)
    subscription.last_event_at = event_time
    subscription.last_event_id = event_id or subscription.last_event_id
    db.session.flush()
    why = "subscription resumed" if source == "api.resume" else _WHY[status]
    sync_user_plan(subscription.user_id, now, why, _details(subscription, source, event_id))
    notifications.on_subscription_applied(subscription)
    return "applied"


def _details(subscription: Subscription, source: str, event_id: str | None) -> dict[str, Any]:
    details = {"subscription_id": subscription.creem_subscription_id,
               "product_id": subscription.product_id, "creem_status": subscription.status,
               "source": source}
    if event_id:
        details["event_id"] = event_id
    return details


def _is_full_refund(obj: Mapping[str, Any]) -> bool:
    """A refund of the whole payment (when the amounts are missing, assume it is)."""
    transaction = obj.get("transaction") if isinstance(obj.get("transaction"), dict) else {}
    paid = transaction.get("amount_paid", transaction.get("amount"))
    refunded = obj.get("refund_amount")
    if not isinstance(paid, int) or not isinstance(refunded, int):
        return True
    return refunded >= paid


def _apply_flag(flag: str, obj: dict[str, Any], event_id: str, event_time: datetime,
                now: datetime) -> str:
    """A full refund or a dispute: no more Pro from that subscription; staff should look."""
    if flag == "refund" and not _is_full_refund(obj):
        return "partial_refund"
    reference = obj.get("subscription")
    transaction = obj.get("transaction") if isinstance(obj.get("transaction"), dict) else {}
    subscription_id = object_id(reference) or object_id(transaction.get("subscription"))
    if subscription_id is None:
        raise WebhookEventUnresolved(f"The {flag} names no subscription.")
    subscription = _lock_subscription_row(subscription_id)
    if subscription is None:
        if not isinstance(reference, dict):
            raise WebhookEventUnresolved(f"The {flag} is for an unknown subscription.")
        try:
            snapshot = _snapshot_from_event("subscription.update", reference)
        except InvalidWebhookPayload:
            raise WebhookEventUnresolved(f"The {flag} is for an unknown subscription.") from None
        subscription = _locked_subscription(snapshot)
    if subscription.staff_flag is None:
        subscription.staff_flag, subscription.flagged_at = flag, event_time
        log.warning("Creem %s on subscription %s (user %s): Pro removed, flagged for staff",
                    flag, subscription.creem_subscription_id, subscription.user_id)
    subscription.access_ends_at = None
    db.session.flush()
    sync_user_plan(subscription.user_id, now, _WHY[flag],
                   _details(subscription, f"creem {flag}", event_id))
    return "flagged"


def clear_flag(creem_subscription_id: str, now: datetime | None = None) -> Subscription:
    """Staff cleared a refund or dispute flag: the subscription's status counts again.

    Raises NoSubscription.
    """
    now = now or utcnow()
    subscription = _lock_subscription_row(creem_subscription_id)
    if subscription is None:
        raise NoSubscription(f"No subscription {creem_subscription_id!r}.")
    subscription.staff_flag, subscription.flagged_at = None, None
    subscription.access_ends_at = _access_end(subscription)
    db.session.flush()
    sync_user_plan(subscription.user_id, now, "flag cleared by staff",
                   _details(subscription, "staff", None))
    return subscription


def flagged_subscriptions() -> list[Subscription]:
    """Subscriptions flagged for staff (refunds and disputes), newest first."""
    return list(db.session.execute(
        select(Subscription).where(Subscription.staff_flag.is_not(None))
        .order_by(Subscription.flagged_at.desc())
    ).scalars())


# -- the period-end sweep ------------------------------------------------------------------


def downgrade_lapsed(now: datetime | None = None, limit: int = 500) -> list[int]:
    """End every time-bounded access that ran out by `now` (a cancellation reached its period
    end, a past-due grace period is over) and downgrade those users who have no other access.

    Returns the ids of the users it moved to the free plan. Safe to run twice or alongside
    the webhook jobs: each subscription is handled under its row lock, each user under theirs.
    """
    now = now or utcnow()
    due = db.session.execute(
        select(Subscription.creem_subscription_id)
        .where(Subscription.access_ends_at <= now)
        .order_by(Subscription.access_ends_at)
        .limit(limit)
    ).scalars().all()
    downgraded = []
    for creem_subscription_id in due:
        subscription = _lock_subscription_row(creem_subscription_id)
        if subscription is None or subscription.access_ends_at is None or (
                subscription.access_ends_at > now):
            continue
        why = ("past-due grace period ended" if subscription.status == "past_due"
               else "subscription ended at the end of its period")
        subscription.access_ends_at = None
        db.session.flush()
        entry = sync_user_plan(subscription.user_id, now, why,
                               _details(subscription, "period_end_sweep", None))
        if entry is not None:
            downgraded.append(subscription.user_id)
    return downgraded
