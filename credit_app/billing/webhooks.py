"""Creem's webhooks: store each signed event once, typed; apply a stored event once.

`record_webhook` verifies the signature, turns the body into a typed `CreemEvent` (once, on
receipt) and stores it with its snapshot in columns. `process_event` applies a stored event
from those columns (never the raw payload) through `subscriptions.apply_snapshot` /
`apply_flag`; a second run finds it processed and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from credit_app.billing import packs, subscriptions
from credit_app.billing.creem.client import CreemClient
from credit_app.billing.creem.events import (
    CHECKOUT_EVENT,
    EVENT_STATUSES,
    FLAG_EVENTS,
    SUBSCRIPTION_EVENTS,
    CreemEvent,
    SubscriptionSnapshot,
    parse_event,
    verify_signature,
)
from credit_app.errors import WebhookEventNotFound, WebhookEventUnresolved
from credit_app.models import WebhookEvent
from credit_app.models.base import lock_one
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000


def _columns(event: CreemEvent) -> dict:
    snapshot = event.subscription
    columns = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "payload": event.payload,
        "event_created_at": event.created_at,
        "created_at_raw_ms": event.created_at_raw_ms,
        "created_at_clamped": event.created_at_clamped,
        "checkout_id": event.checkout_id,
        "request_id": event.request_id,
        "amount_paid": event.amount_paid,
        "amount_refunded": event.amount_refunded,
        "order_id": event.order_id,
    }
    if event.order_product_id is not None:
        columns["product_id"] = event.order_product_id
    if event.metadata_user_id is not None:
        columns["metadata_user_id"] = event.metadata_user_id
    if snapshot is not None:
        columns.update(
            creem_subscription_id=snapshot.subscription_id,
            creem_customer_id=snapshot.customer_id,
            product_id=snapshot.product_id,
            subscription_status=snapshot.status,
            period_start=snapshot.period_start,
            period_end=snapshot.period_end,
            canceled_at=snapshot.canceled_at,
            metadata_user_id=snapshot.metadata_user_id,
        )
    return columns


def record_webhook(
    raw_body: bytes, signature: str | None, now: datetime | None = None
) -> tuple[WebhookEvent, bool]:
    """Verify, type and store a webhook delivery; returns the event and whether it is new.

    A delivery of an event already stored changes nothing. Raises InvalidWebhookSignature
    (nothing is stored), InvalidWebhookPayload.
    """
    verify_signature(raw_body, signature, current_app.config["CREEM_WEBHOOK_SECRET"])
    event = parse_event(raw_body, now or utcnow())
    if event.created_at_clamped:
        log.warning(
            "Creem event %s is dated %d ms, ahead of our clock: ordered as received",
            event.event_id,
            event.created_at_raw_ms,
        )
    inserted = db.session.execute(
        insert(WebhookEvent)
        .values(**_columns(event))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.id)
    ).scalar_one_or_none()
    stored = db.session.execute(
        select(WebhookEvent).where(WebhookEvent.event_id == event.event_id)
    ).scalar_one()
    return stored, inserted is not None


def _locked_event(event_id: str) -> WebhookEvent:
    event = lock_one(WebhookEvent, WebhookEvent.event_id == event_id)
    if event is None:
        raise WebhookEventNotFound(f"No webhook event {event_id!r}.")
    return event


def stored_snapshot(event: WebhookEvent) -> SubscriptionSnapshot | None:
    """The subscription snapshot stored with the event on receipt."""
    if event.creem_subscription_id is None:
        return None
    return SubscriptionSnapshot(
        subscription_id=event.creem_subscription_id,
        status=event.subscription_status,
        product_id=event.product_id,
        customer_id=event.creem_customer_id,
        period_start=event.period_start,
        period_end=event.period_end,
        canceled_at=event.canceled_at,
        updated_at=None,
        metadata_user_id=event.metadata_user_id,
    )


def apply_stored_event(
    event: WebhookEvent, now: datetime, client: CreemClient | None = None
) -> str:
    """Apply one stored event to the subscriptions and the user's plan, or, for a credit
    pack's order, grant or take back the pack (billing/packs.py); returns the outcome.

    Raises WebhookEventUnresolved (no user is known, or a subscription event names no
    subscription), CreemError (a re-read failed), UserNotFound.
    """
    snapshot = stored_snapshot(event)
    if event.event_type in (CHECKOUT_EVENT, "refund.created") and packs.is_pack_event(event):
        if event.event_type == CHECKOUT_EVENT:
            return packs.apply_pack_order(event)
        return packs.apply_pack_refund(event)
    if event.event_type in SUBSCRIPTION_EVENTS or (
        event.event_type == CHECKOUT_EVENT and snapshot is not None
    ):
        if snapshot is None:
            raise WebhookEventUnresolved(f"The {event.event_type} event names no subscription.")
        return subscriptions.apply_snapshot(
            snapshot,
            event.event_created_at,
            event.event_type,
            announced=EVENT_STATUSES.get(event.event_type),
            event_id=event.event_id,
            now=now,
            client=client,
        )
    if event.event_type in FLAG_EVENTS:
        flag = FLAG_EVENTS[event.event_type]
        full = not (
            flag == "refund"
            and event.amount_paid is not None
            and event.amount_refunded is not None
            and event.amount_refunded < event.amount_paid
        )
        return subscriptions.apply_flag(
            flag,
            snapshot,
            event.event_created_at,
            event_id=event.event_id,
            full=full,
            now=now,
            client=client,
        )
    log.info("ignoring Creem event %s of type %s", event.event_id, event.event_type)
    return "ignored"


def process_event(
    event_id: str, now: datetime | None = None, client: CreemClient | None = None
) -> str:
    """Apply a stored event once; a repeat returns "already_processed" and changes nothing.

    Returns the outcome. Raises WebhookEventNotFound, WebhookEventUnresolved, CreemError,
    UserNotFound.
    """
    now = now or utcnow()
    event = _locked_event(event_id)
    if event.processed_at is not None:
        return "already_processed"
    event.attempts += 1
    outcome = apply_stored_event(event, now, client)
    event.processed_at, event.outcome, event.last_error = now, outcome, None
    db.session.flush()
    return outcome


def record_failure(event_id: str, error: BaseException) -> None:
    """Note a failed attempt on the event (its count and the error); call after a rollback."""
    event = lock_one(WebhookEvent, WebhookEvent.event_id == event_id)
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
