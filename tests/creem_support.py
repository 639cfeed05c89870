"""Helpers for the subscription tests: a Creem stand-in that keeps its webhooks for the test to
deliver, a settable clock, and posting signed events to the app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from pytest import MonkeyPatch
from sqlalchemy import delete

from credit_app.billing.creem.events import sign_body as sign
from credit_app.models import Subscription, User, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.testing.creem import (
    CreemStandIn,
    SentEvent,
    StoredSubscription,
    create_stand_in_app,
    encode,
    event_envelope,
    serve_stand_in,
)

WEBHOOK_URL = "/billing/webhooks/creem"
# Where the billing tests' clock starts (tests/billing/conftest.py), far from the real date so
# that no period, grace or expiry computed from it can coincide with the wall clock.
START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the stand-in reads and the test moves."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_stand_in(app: Flask, clock: Clock | None = None, **options: Any) -> CreemStandIn:
    """A stand-in that shares the app's API key and webhook secret and delivers nothing."""
    options.setdefault("deliver", False)
    return CreemStandIn(
        app.config["CREEM_API_KEY"], app.config["CREEM_WEBHOOK_SECRET"], clock=clock, **options
    )


@contextmanager
def served_stand_in(
    app: Flask, monkeypatch: MonkeyPatch, clock: Clock | None = None
) -> Iterator[CreemStandIn]:
    """A stand-in (make_stand_in) served over HTTP on 127.0.0.1, with `clock` if given, and
    the app pointed at it for the test."""
    stand_in_app = create_stand_in_app(make_stand_in(app, clock))
    with serve_stand_in(stand_in_app) as url:
        monkeypatch.setitem(app.config, "CREEM_API_URL", url)
        yield stand_in_app.extensions["creem_stand_in"]


def delete_stand_in_rows(stand_in: CreemStandIn) -> None:
    """Delete the webhook events and subscriptions a stand-in's run committed; subscriptions
    keep their users (ON DELETE RESTRICT), so they go before the users do."""
    db.session.remove()
    with db.engine.begin() as connection:
        connection.execute(
            delete(WebhookEvent).where(
                WebhookEvent.event_id.in_([event.id for event in stand_in.events])
            )
        )
        connection.execute(
            delete(Subscription).where(
                Subscription.creem_subscription_id.in_(list(stand_in.subscriptions))
            )
        )


def subscribe(
    stand_in: CreemStandIn,
    user: User,
    plan: str = "CREEM_PRODUCT_PRO_MONTHLY",
    app: Flask | None = None,
    product_id: str | None = None,
) -> tuple[StoredSubscription, list[SentEvent]]:
    """Check out and pay for `user` at the stand-in (the `plan`'s product, or `product_id`);
    returns the subscription and its events (checkout.completed, subscription.active,
    subscription.paid)."""
    from flask import current_app

    config = (app or current_app).config
    before = len(stand_in.events)
    checkout = stand_in.create_checkout(
        {
            "product_id": product_id or config[plan],
            "request_id": f"req-{uuid.uuid4().hex}",
            "success_url": "http://localhost/dashboard/subscription/return?feature=interior",
            "customer": {"email": user.email},
            "metadata": {"user_id": str(user.id), "plan": "pro_monthly", "feature": "interior"},
        }
    )
    stand_in.pay(checkout.id)
    return stand_in.subscription(checkout.subscription_id), stand_in.events[before:]


def custom_event(
    stand_in: CreemStandIn,
    subscription: StoredSubscription,
    event_type: str,
    status: str,
    at: datetime,
    **changes: Any,
) -> dict[str, Any]:
    """An event the stand-in has no button for (e.g. trialing), shaped like its own."""
    obj = stand_in.subscription_object(subscription)
    obj.update(status=status, **changes)
    return event_envelope(event_type, obj, int(at.timestamp() * 1000))


def post_event(
    client: FlaskClient,
    event: SentEvent | dict[str, Any],
    secret: str | None = None,
    **headers: str,
):
    """POST an event to the webhook endpoint, signed with `secret` (default: the app's)."""
    body = event.body if isinstance(event, SentEvent) else encode(event)
    secret = secret or client.application.config["CREEM_WEBHOOK_SECRET"]
    all_headers = {
        "content-type": "application/json",
        "creem-signature": sign(body, secret),
        **headers,
    }
    return client.post(WEBHOOK_URL, data=body, headers=all_headers)


def payload(event: SentEvent | dict[str, Any]) -> dict[str, Any]:
    return event.payload if isinstance(event, SentEvent) else event


def apply_events(events, now: datetime | None = None) -> list[str]:
    """Store each event as the webhook route would (signed, typed on receipt) and process it
    at `now`; returns the outcomes."""
    from flask import current_app

    from credit_app.billing import webhooks

    secret = current_app.config["CREEM_WEBHOOK_SECRET"]
    outcomes = []
    for event in events:
        body = event.body if isinstance(event, SentEvent) else encode(event)
        stored, _created = webhooks.record_webhook(body, sign(body, secret), now)
        outcomes.append(webhooks.process_event(stored.event_id, now))
    return outcomes


def buy_pack(
    stand_in: CreemStandIn, user: User, pack: str = "pack_20", app: Flask | None = None
) -> tuple[str, list[SentEvent]]:
    """Check out and pay for a credit pack for `user` at the stand-in, as the app's pack
    checkout asks for it; returns the Creem order id and its events (checkout.completed)."""
    from flask import current_app

    config = (app or current_app).config
    product_id = next(item["product_id"] for item in config["CREDIT_PACKS"] if item["key"] == pack)
    before = len(stand_in.events)
    checkout = stand_in.create_checkout(
        {
            "product_id": product_id,
            "request_id": f"checkout-{user.id}-{uuid.uuid4().hex}",
            "success_url": "http://localhost/dashboard/subscription/return?feature=interior",
            "customer": {"email": user.email},
            "metadata": {"user_id": str(user.id), "pack": pack, "feature": "interior"},
        }
    )
    stand_in.pay(checkout.id)
    return stand_in.checkouts[checkout.id].order_id, stand_in.events[before:]
