"""Creem's webhook events as typed snapshots: the one place that reads Creem's JSON.

A delivery is parsed once, on receipt (`parse_event`), into a `CreemEvent`; the webhook route
stores its fields in `webhook_events` columns and processing reads those columns, never the
raw payload again. Creem's API answers (`subscription_from_api`) become the same
`SubscriptionSnapshot`, so an event and a re-read of the subscription are applied alike.

The shapes follow Creem's documented samples (docs.creem.io, "Webhooks" and the webhook
reference; copies in `credit_app/testing/creem/samples/`): the envelope is
`{"id", "eventType", "created_at" (epoch ms), "object"}`; subscription events carry the
subscription (product and customer expanded, `metadata` only on some of them:
`subscription.active`, `.expired`, `.update`, `.trialing` and `.paused` have none);
`checkout.completed` carries the checkout with its `subscription` (product and customer as
ids, no period dates) and `metadata`; `refund.created` and `dispute.created` carry the
transaction and the subscription.

Also shared with the Creem stand-in, so the two cannot drift apart: the signature schemes
(`sign_body`, `redirect_signature`), the statuses, the redirect keys, the cancel modes and
the plan-change behaviours.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from credit_app.errors import CreemError, InvalidWebhookPayload, InvalidWebhookSignature

SIGNATURE_HEADER = "creem-signature"
# Creem's subscription statuses (its OpenAPI `SubscriptionEntity.status`).
CREEM_STATUSES: tuple[str, ...] = (
    "incomplete",
    "active",
    "trialing",
    "past_due",
    "unpaid",
    "paused",
    "scheduled_cancel",
    "canceled",
    "expired",
)
# The status each subscription event announces; `subscription.update` announces none (its
# object's status says it) and `subscription.paid` means a payment went through (active).
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
SUBSCRIPTION_EVENTS = frozenset({*EVENT_STATUSES, "subscription.update"})
CHECKOUT_EVENT = "checkout.completed"
FLAG_EVENTS: dict[str, str] = {"refund.created": "refund", "dispute.created": "dispute"}
# Every event type Creem documents (the app ignores the credits ones).
EVENT_TYPES: tuple[str, ...] = (
    CHECKOUT_EVENT,
    *EVENT_STATUSES,
    "subscription.update",
    *FLAG_EVENTS,
)
REDIRECT_KEYS: tuple[str, ...] = (
    "checkout_id",
    "order_id",
    "customer_id",
    "subscription_id",
    "product_id",
    "request_id",
)
CANCEL_MODES: tuple[str, ...] = ("scheduled", "immediate")
# `POST /v1/subscriptions/{id}/upgrade`'s `update_behavior` values.
UPDATE_BEHAVIORS: tuple[str, ...] = (
    "proration-charge-immediately",
    "proration-charge",
    "proration-none",
)
# Real events are a few KB; anything near this is not one.
MAX_WEBHOOK_BYTES = 256 * 1024
# A created_at further ahead of our clock than this is clamped to the time we received it.
FUTURE_TOLERANCE = timedelta(minutes=5)


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO-8601 string (Creem's dates) or epoch milliseconds as an aware datetime.

    Returns None for None or an empty string; raises ValueError for anything else unparseable.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp without a time zone: {value!r}")
        return parsed
    raise ValueError(f"not a timestamp: {value!r}")


def object_id(value: Any) -> str | None:
    """The id of a Creem reference, which is either an id string or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def sign_body(body: bytes, secret: str) -> str:
    """Creem's webhook signature: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(raw_body: bytes, signature: str | None, secret: str) -> None:
    """Check `creem-signature` in constant time. Raises InvalidWebhookSignature."""
    expected = sign_body(raw_body, secret)
    if not signature or not hmac.compare_digest(
        expected.encode(), signature.strip().lower().encode()
    ):
        raise InvalidWebhookSignature()


def redirect_signature(params: Iterable[tuple[str, str]], api_key: str) -> str:
    """Creem's success-redirect signature: SHA-256 of `k=v|k=v|…|salt=<api key>` over the
    redirect keys that have a value, in the order they came."""
    parts = [f"{key}={value}" for key, value in params if key in REDIRECT_KEYS and value]
    return hashlib.sha256("|".join([*parts, f"salt={api_key}"]).encode()).hexdigest()


def verify_redirect(params: Iterable[tuple[str, str]], api_key: str) -> bool:
    """Whether the success redirect's `signature` matches its parameters."""
    pairs = list(params)
    signature = next((value for key, value in pairs if key == "signature"), "")
    if not signature or not any(key in REDIRECT_KEYS and value for key, value in pairs):
        return False
    return hmac.compare_digest(redirect_signature(pairs, api_key), signature.lower())


@dataclass(frozen=True)
class SubscriptionSnapshot:
    """A subscription as one event or one API answer describes it; None where it is silent."""

    subscription_id: str
    status: str | None
    product_id: str | None
    customer_id: str | None
    period_start: datetime | None
    period_end: datetime | None
    canceled_at: datetime | None
    updated_at: datetime | None
    metadata_user_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CreemEvent:
    """One signed delivery, typed. `created_at` is what ordering uses (clamped, see
    `parse_event`); `created_at_raw_ms` is what Creem sent."""

    event_id: str
    event_type: str
    created_at: datetime
    created_at_raw_ms: int
    created_at_clamped: bool
    payload: dict[str, Any]
    subscription: SubscriptionSnapshot | None = None
    checkout_id: str | None = None
    request_id: str | None = None
    amount_paid: int | None = None
    amount_refunded: int | None = None
    # The order a checkout or a refund is about (a one-time product's, such as a credit
    # pack, or a subscription's first), its product, and the user the checkout's metadata
    # names (for a one-time product, which has no subscription to carry it).
    order_id: str | None = None
    order_product_id: str | None = None
    metadata_user_id: str | None = None


def _metadata_user_id(metadata: Mapping[str, Any]) -> str | None:
    raw = metadata.get("user_id")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    text = str(raw).strip()
    return text if text.isdigit() and len(text) <= 18 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _snapshot(
    data: dict[str, Any],
    extra_metadata: Mapping[str, Any] | None = None,
    fallback_customer: Any = None,
    fallback_product: Any = None,
) -> SubscriptionSnapshot:
    """Read a subscription object. Raises ValueError for a bad date or a missing id."""
    subscription_id = data.get("id")
    if not isinstance(subscription_id, str) or not subscription_id or len(subscription_id) > 100:
        raise ValueError("the subscription has no valid id")
    status = data.get("status")
    if status is not None and status not in CREEM_STATUSES:
        raise ValueError(f"unknown subscription status {status!r}")
    metadata = {**_dict(extra_metadata), **_dict(data.get("metadata"))}
    return SubscriptionSnapshot(
        subscription_id=subscription_id,
        status=status,
        product_id=object_id(data.get("product")) or object_id(fallback_product),
        customer_id=object_id(data.get("customer")) or object_id(fallback_customer),
        period_start=parse_timestamp(data.get("current_period_start_date")),
        period_end=parse_timestamp(data.get("current_period_end_date")),
        canceled_at=parse_timestamp(data.get("canceled_at")),
        updated_at=parse_timestamp(data.get("updated_at")),
        metadata_user_id=_metadata_user_id(metadata),
        metadata=metadata,
    )


def subscription_from_api(data: Any) -> SubscriptionSnapshot:
    """Creem's API answer for a subscription. Raises CreemError if it is not one."""
    if not isinstance(data, dict) or data.get("status") not in CREEM_STATUSES:
        raise CreemError("Creem answered with something that is not a subscription.")
    try:
        return _snapshot(data)
    except ValueError as exc:
        raise CreemError(f"Creem sent a subscription it cannot be read: {exc}") from None


def _order_id(value: Any) -> str | None:
    found = object_id(value)
    return found if found is not None and len(found) <= 100 else None


def _amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_event(raw_body: bytes, received_at: datetime) -> CreemEvent:
    """Turn a signed body into a CreemEvent.

    `created_at` more than FUTURE_TOLERANCE ahead of `received_at` is **clamped** to
    `received_at` (and `created_at_clamped` says so), not refused: the body is signed by
    Creem, so refusing it would only make Creem retry the same timestamp until it gives up
    after a day, losing a real event; clamping keeps the event and bounds how far it can
    outrank later ones to the moment it arrived, so a clock error at Creem cannot make every
    later event look stale. Raises InvalidWebhookPayload.
    """
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidWebhookPayload("The webhook body is not JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidWebhookPayload()
    event_id, event_type = payload.get("id"), payload.get("eventType")
    created_ms, obj = payload.get("created_at"), payload.get("object")
    if not (isinstance(event_id, str) and 1 <= len(event_id) <= 100):
        raise InvalidWebhookPayload("The event has no valid id.")
    if not (isinstance(event_type, str) and 1 <= len(event_type) <= 60):
        raise InvalidWebhookPayload("The event has no valid eventType.")
    if (
        isinstance(created_ms, bool)
        or not isinstance(created_ms, int)
        or not (0 < created_ms < 10**14)
    ):
        raise InvalidWebhookPayload("The event's created_at must be epoch milliseconds.")
    if not isinstance(obj, dict):
        raise InvalidWebhookPayload("The event has no object.")
    created_at = datetime.fromtimestamp(created_ms / 1000, UTC)
    clamped = created_at > received_at + FUTURE_TOLERANCE
    fields: dict[str, Any] = {}
    try:
        if event_type in SUBSCRIPTION_EVENTS:
            snapshot = _snapshot(obj)
            if snapshot.status is None and event_type not in EVENT_STATUSES:
                raise ValueError("the subscription has no status")
            fields["subscription"] = snapshot
        elif event_type == CHECKOUT_EVENT:
            order = _dict(obj.get("order"))
            fields["order_id"] = _order_id(obj.get("order"))
            fields["order_product_id"] = object_id(order.get("product")) or object_id(
                obj.get("product")
            )
            fields["metadata_user_id"] = _metadata_user_id(_dict(obj.get("metadata")))
            fields["checkout_id"] = object_id(obj)
            fields["request_id"] = (
                obj.get("request_id") if isinstance(obj.get("request_id"), str) else None
            )
            nested = obj.get("subscription")
            if isinstance(nested, dict):
                fields["subscription"] = _snapshot(
                    nested, _dict(obj.get("metadata")), obj.get("customer"), obj.get("product")
                )
        elif event_type in FLAG_EVENTS:
            transaction = _dict(obj.get("transaction"))
            order = _dict(obj.get("order"))
            fields["order_id"] = _order_id(obj.get("order")) or _order_id(transaction.get("order"))
            fields["order_product_id"] = object_id(order.get("product"))
            nested = obj.get("subscription")
            subscription_id = object_id(nested) or object_id(transaction.get("subscription"))
            if subscription_id is not None:
                fields["subscription"] = _snapshot(
                    {**_dict(nested), "id": subscription_id},
                    None,
                    obj.get("customer") or transaction.get("customer"),
                    None,
                )
            fields["amount_paid"] = _amount(
                transaction.get("amount_paid", transaction.get("amount"))
            )
            fields["amount_refunded"] = _amount(obj.get("refund_amount", obj.get("amount")))
    except ValueError as exc:
        raise InvalidWebhookPayload(f"The {event_type} event cannot be read: {exc}.") from None
    return CreemEvent(
        event_id=event_id,
        event_type=event_type,
        created_at=received_at if clamped else created_at,
        created_at_raw_ms=created_ms,
        created_at_clamped=clamped,
        payload=payload,
        **fields,
    )
