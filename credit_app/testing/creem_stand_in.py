"""A local stand-in for Creem: its REST API, a hosted checkout page, and signed webhooks.

The API (`x-api-key` header): `POST /v1/checkouts`, `GET /v1/subscriptions?subscription_id=`,
`POST /v1/subscriptions/<id>/cancel` (`{"mode": "scheduled" | "immediate"}`),
`POST /v1/subscriptions/<id>/resume` and `POST /v1/customers/billing` answer like Creem does.
A checkout's `checkout_url` is a page here with **Pay** and **Cancel**: Pay creates the customer,
order and subscription, redirects to the checkout's `success_url` with Creem's signed
parameters, and sends the webhooks Creem sends (`checkout.completed`, `subscription.active`,
`subscription.paid`), each signed with the webhook secret in the `creem-signature` header, to
the webhook URL (by default `/billing/webhooks/creem` on the success URL's origin). A delivery
that is not answered 200 is retried after `retry_delays` seconds, as Creem does.

On request it also sends what happens later in a subscription's life: renewals, cancellations,
past-due, unpaid, pause, expiry, refunds, disputes, duplicates of an event, and out-of-order
sequences (hold the events, then release them reversed or shuffled). Those are methods of
`CreemStandIn` for tests, and buttons on its control page at `/` for people.

Tests usually set `deliver=False`: events then only collect in `CreemStandIn.events`, and the
test posts their signed bodies to the app's test client itself.

Run it on its own with `python -m credit_app.testing.creem_stand_in --port 5056`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from flask import Flask, Response, current_app, jsonify, redirect, request
from werkzeug.serving import make_server

from credit_app.config import CREEM_STAND_IN_API_KEY, CREEM_STAND_IN_PRODUCTS
from credit_app.testing import serve_in_thread

WEBHOOK_PATH = "/billing/webhooks/creem"
RETRY_DELAYS: tuple[float, ...] = (30, 60, 300, 3600)
REDIRECT_KEYS: tuple[str, ...] = ("checkout_id", "order_id", "customer_id", "subscription_id",
                                  "product_id", "request_id")
SUBSCRIPTION_ACTIONS: tuple[str, ...] = (
    "renew", "end-period", "cancel-scheduled", "cancel-immediate", "resume", "past-due",
    "unpaid", "pause", "expire", "refund", "partial-refund", "dispute",
)


@dataclass(frozen=True)
class StandInProduct:
    id: str
    name: str
    price: int
    currency: str
    billing_period: str

    @property
    def period(self) -> timedelta:
        return timedelta(days=365 if self.billing_period == "every-year" else 30)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "product", "name": self.name, "description": self.name,
                "price": self.price, "currency": self.currency, "billing_type": "recurring",
                "billing_period": self.billing_period, "status": "active", "mode": "test"}


DEFAULT_PRODUCTS: dict[str, StandInProduct] = {
    product.id: product for product in (
        StandInProduct(CREEM_STAND_IN_PRODUCTS["CREEM_PRODUCT_PRO_MONTHLY"], "Pro monthly", 1900,
                       "USD", "every-month"),
        StandInProduct(CREEM_STAND_IN_PRODUCTS["CREEM_PRODUCT_PRO_YEARLY"], "Pro yearly", 19000,
                       "USD", "every-year"),
    )
}


@dataclass
class StoredCheckout:
    id: str
    product_id: str
    request_id: str | None
    success_url: str
    metadata: dict[str, Any]
    customer_email: str | None
    status: str = "pending"
    order_id: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None


@dataclass
class StoredSubscription:
    id: str
    product: StandInProduct
    customer_id: str
    customer_email: str
    metadata: dict[str, Any]
    app_origin: str
    status: str
    current_period_start: datetime
    current_period_end: datetime
    created_at: datetime
    updated_at: datetime
    canceled_at: datetime | None = None
    last_transaction_id: str | None = None


@dataclass
class SentEvent:
    """One webhook event: its signed body, where it goes, and how each delivery went."""

    id: str
    event_type: str
    created_at: int
    body: bytes = field(repr=False)
    signature: str
    url: str
    statuses: list[int | str] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "creem-signature": self.signature}


class StandInError(Exception):
    """An action the stand-in refuses, as Creem would (the status is the HTTP answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sign(body: bytes, secret: str) -> str:
    """Creem's webhook signature: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_redirect(params: list[tuple[str, str]], api_key: str) -> str:
    """Creem's success-redirect signature: SHA-256 of `k=v|k=v|…|salt=<api key>`."""
    parts = [f"{key}={value}" for key, value in params if value]
    return hashlib.sha256("|".join([*parts, f"salt={api_key}"]).encode()).hexdigest()


def event_envelope(event_type: str, obj: dict[str, Any], created_at: int,
                   event_id: str | None = None) -> dict[str, Any]:
    """A Creem webhook envelope around `obj`; `created_at` is in epoch milliseconds."""
    return {"id": event_id or new_id("evt"), "eventType": event_type, "created_at": created_at,
            "object": obj}


def encode(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class CreemStandIn:
    """The stand-in's state and everything it can do; guarded by `lock`; tests drive it."""

    def __init__(
        self,
        api_key: str = CREEM_STAND_IN_API_KEY,
        webhook_secret: str = "whsec_stand_in",
        *,
        products: dict[str, StandInProduct] | None = None,
        webhook_url: str | None = None,
        deliver: bool = True,
        delivery_delay: float = 0.0,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.products = dict(products or DEFAULT_PRODUCTS)
        self.webhook_url = webhook_url
        self.deliver = deliver
        self.delivery_delay = delivery_delay
        self.retry_delays = retry_delays
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.checkouts: dict[str, StoredCheckout] = {}
        self.subscriptions: dict[str, StoredSubscription] = {}
        self.customers: dict[str, str] = {}
        self.events: list[SentEvent] = []
        self.held: list[SentEvent] = []
        self.holding = False
        self.requests: list[tuple[str, str, int]] = []
        self.fail_next_requests = 0
        self._last_ms = 0
        self._http: httpx.Client | None = None

    # -- checkouts -----------------------------------------------------------------------

    def create_checkout(self, body: Any) -> StoredCheckout:
        """A checkout as POST /v1/checkouts makes it; the same request_id gives the same one.

        Raises StandInError (400) for a bad body, (404) for an unknown product.
        """
        if not isinstance(body, dict):
            raise StandInError(400, "The request body must be a JSON object.")
        product_id, success_url = body.get("product_id"), body.get("success_url")
        if not isinstance(product_id, str) or product_id not in self.products:
            raise StandInError(404, f"Product {product_id!r} not found.")
        if not isinstance(success_url, str) or urlsplit(success_url).scheme not in (
                "http", "https"):
            raise StandInError(400, "success_url must be an http(s) URL.")
        customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
        with self.lock:
            for checkout in self.checkouts.values():
                if request_id and checkout.request_id == request_id:
                    return checkout
            checkout = StoredCheckout(new_id("ch"), product_id, request_id, success_url,
                                      metadata, customer.get("email"))
            self.checkouts[checkout.id] = checkout
            return checkout

    def pay(self, checkout_id: str, email: str | None = None) -> str:
        """Complete the checkout: customer, order, subscription, webhooks; returns the redirect.

        Raises StandInError (404) for an unknown checkout, (409) one that is not pending.
        """
        with self.lock:
            checkout = self._checkout(checkout_id)
            if checkout.status != "pending":
                raise StandInError(409, f"Checkout {checkout_id} is {checkout.status}.")
            email = (email or checkout.customer_email or "customer@example.com").strip()
            customer_id = self.customers.setdefault(email, new_id("cust"))
            now = self.clock()
            product = self.products[checkout.product_id]
            subscription = StoredSubscription(
                id=new_id("sub"), product=product, customer_id=customer_id,
                customer_email=email, metadata=dict(checkout.metadata),
                app_origin=origin_of(checkout.success_url), status="active",
                current_period_start=now, current_period_end=now + product.period,
                created_at=now, updated_at=now, last_transaction_id=new_id("tran"),
            )
            self.subscriptions[subscription.id] = subscription
            checkout.status = "completed"
            checkout.order_id, checkout.customer_id = new_id("ord"), customer_id
            checkout.subscription_id = subscription.id
            self._emit("checkout.completed", self._checkout_object(checkout, subscription),
                       subscription)
            self._emit("subscription.active", self.subscription_object(subscription),
                       subscription)
            self._emit("subscription.paid", self.subscription_object(subscription),
                       subscription)
            return self._success_redirect(checkout)

    def cancel_checkout(self, checkout_id: str) -> str:
        """Abandon the checkout; returns where to send the buyer back (the app's plans page)."""
        with self.lock:
            checkout = self._checkout(checkout_id)
            if checkout.status == "pending":
                checkout.status = "expired"
            return origin_of(checkout.success_url) + "/dashboard/subscription?checkout=canceled"

    def _checkout(self, checkout_id: str) -> StoredCheckout:
        checkout = self.checkouts.get(checkout_id)
        if checkout is None:
            raise StandInError(404, f"Checkout {checkout_id} not found.")
        return checkout

    def _success_redirect(self, checkout: StoredCheckout) -> str:
        params = [("checkout_id", checkout.id), ("order_id", checkout.order_id),
                  ("customer_id", checkout.customer_id),
                  ("subscription_id", checkout.subscription_id),
                  ("product_id", checkout.product_id), ("request_id", checkout.request_id)]
        params = [(key, value) for key, value in params if value]
        params.append(("signature", sign_redirect(params, self.api_key)))
        separator = "&" if urlsplit(checkout.success_url).query else "?"
        return checkout.success_url + separator + urlencode(params)

    # -- subscriptions -------------------------------------------------------------------

    def subscription(self, subscription_id: str) -> StoredSubscription:
        """Raises StandInError (404) for an unknown subscription."""
        with self.lock:
            found = self.subscriptions.get(subscription_id)
        if found is None:
            raise StandInError(404, f"Subscription {subscription_id} not found.")
        return found

    def act(self, subscription_id: str, action: str) -> StoredSubscription:
        """Do one of SUBSCRIPTION_ACTIONS to a subscription and send its webhook.

        Raises StandInError (404) for an unknown subscription or action, (400) when Creem
        would refuse it (e.g. resuming an active subscription).
        """
        handlers: dict[str, Callable[[StoredSubscription], None]] = {
            "renew": self._renew,
            "end-period": self._end_period,
            "cancel-scheduled": lambda sub: self._cancel(sub, "scheduled"),
            "cancel-immediate": lambda sub: self._cancel(sub, "immediate"),
            "resume": self._resume,
            "past-due": lambda sub: self._set_status(sub, "past_due", "subscription.past_due"),
            "unpaid": lambda sub: self._set_status(sub, "unpaid", "subscription.unpaid"),
            "pause": lambda sub: self._set_status(sub, "paused", "subscription.paused"),
            "expire": lambda sub: self._set_status(sub, "expired", "subscription.expired"),
            "refund": lambda sub: self._refund(sub, full=True),
            "partial-refund": lambda sub: self._refund(sub, full=False),
            "dispute": self._dispute,
        }
        handler = handlers.get(action)
        if handler is None:
            raise StandInError(404, f"Unknown action {action!r}.")
        with self.lock:
            subscription = self.subscription(subscription_id)
            handler(subscription)
            return subscription

    def _touch(self, subscription: StoredSubscription) -> datetime:
        now = self.clock()
        subscription.updated_at = now
        return now

    def _renew(self, subscription: StoredSubscription) -> None:
        if subscription.status in ("canceled", "expired"):
            raise StandInError(400, "A canceled or expired subscription cannot renew.")
        self._touch(subscription)
        subscription.current_period_start = subscription.current_period_end
        subscription.current_period_end += subscription.product.period
        subscription.status, subscription.canceled_at = "active", None
        subscription.last_transaction_id = new_id("tran")
        self._emit("subscription.paid", self.subscription_object(subscription), subscription)

    def _end_period(self, subscription: StoredSubscription) -> None:
        if subscription.status == "scheduled_cancel":
            self._touch(subscription)
            subscription.status = "canceled"
            self._emit("subscription.canceled", self.subscription_object(subscription),
                       subscription)
        else:
            self._renew(subscription)

    def _cancel(self, subscription: StoredSubscription, mode: str) -> None:
        if subscription.status in ("canceled", "expired"):
            raise StandInError(400, "The subscription is already canceled.")
        now = self._touch(subscription)
        subscription.canceled_at = now
        if mode == "scheduled":
            subscription.status = "scheduled_cancel"
            self._emit("subscription.scheduled_cancel", self.subscription_object(subscription),
                       subscription)
        else:
            subscription.status, subscription.current_period_end = "canceled", now
            self._emit("subscription.canceled", self.subscription_object(subscription),
                       subscription)

    def _resume(self, subscription: StoredSubscription) -> None:
        if subscription.status not in ("scheduled_cancel", "paused"):
            raise StandInError(400, f"A subscription that is {subscription.status} cannot be "
                                    "resumed.")
        self._touch(subscription)
        subscription.status, subscription.canceled_at = "active", None
        self._emit("subscription.update", self.subscription_object(subscription), subscription)

    def _set_status(self, subscription: StoredSubscription, status: str, event: str) -> None:
        self._touch(subscription)
        subscription.status = status
        self._emit(event, self.subscription_object(subscription), subscription)

    def _transaction(self, subscription: StoredSubscription) -> dict[str, Any]:
        return {"id": subscription.last_transaction_id, "object": "transaction",
                "amount": subscription.product.price, "amount_paid": subscription.product.price,
                "currency": subscription.product.currency, "type": "invoice",
                "status": "paid", "subscription": subscription.id,
                "customer": subscription.customer_id, "mode": "test"}

    def _refund(self, subscription: StoredSubscription, *, full: bool) -> None:
        now = self.clock()
        amount = subscription.product.price if full else subscription.product.price // 4
        self._emit("refund.created", {
            "id": new_id("ref"), "object": "refund", "status": "succeeded",
            "refund_amount": amount, "refund_currency": subscription.product.currency,
            "reason": "requested_by_customer", "transaction": self._transaction(subscription),
            "subscription": self.subscription_object(subscription),
            "customer": self._customer_object(subscription), "created_at": epoch_ms(now),
            "mode": "test",
        }, subscription)

    def _dispute(self, subscription: StoredSubscription) -> None:
        now = self.clock()
        self._emit("dispute.created", {
            "id": new_id("disp"), "object": "dispute", "amount": subscription.product.price,
            "currency": subscription.product.currency,
            "transaction": self._transaction(subscription),
            "subscription": self.subscription_object(subscription),
            "customer": self._customer_object(subscription), "created_at": epoch_ms(now),
            "mode": "test",
        }, subscription)

    # -- payloads ------------------------------------------------------------------------

    def _customer_object(self, subscription: StoredSubscription) -> dict[str, Any]:
        return {"id": subscription.customer_id, "object": "customer",
                "email": subscription.customer_email, "name": None, "country": "NL",
                "mode": "test"}

    def subscription_object(self, subscription: StoredSubscription) -> dict[str, Any]:
        """The subscription as Creem's API and subscription events show it (expanded)."""
        return {
            "id": subscription.id, "object": "subscription",
            "product": subscription.product.to_dict(),
            "customer": self._customer_object(subscription),
            "collection_method": "charge_automatically", "status": subscription.status,
            "last_transaction_id": subscription.last_transaction_id,
            "current_period_start_date": iso(subscription.current_period_start),
            "current_period_end_date": iso(subscription.current_period_end),
            "next_transaction_date": (None if subscription.status != "active"
                                      else iso(subscription.current_period_end)),
            "canceled_at": iso(subscription.canceled_at),
            "created_at": iso(subscription.created_at),
            "updated_at": iso(subscription.updated_at),
            "metadata": dict(subscription.metadata), "mode": "test",
        }

    def _checkout_object(self, checkout: StoredCheckout,
                         subscription: StoredSubscription) -> dict[str, Any]:
        product = subscription.product
        return {
            "id": checkout.id, "object": "checkout", "request_id": checkout.request_id,
            "order": {"id": checkout.order_id, "customer": subscription.customer_id,
                      "product": product.id, "amount": product.price,
                      "currency": product.currency, "status": "paid", "type": "recurring",
                      "mode": "test"},
            "product": product.to_dict(), "customer": self._customer_object(subscription),
            "subscription": {
                "id": subscription.id, "object": "subscription", "product": product.id,
                "customer": subscription.customer_id,
                "collection_method": "charge_automatically", "status": subscription.status,
                "canceled_at": None, "created_at": iso(subscription.created_at),
                "updated_at": iso(subscription.updated_at),
                "metadata": dict(subscription.metadata), "mode": "test",
            },
            "custom_fields": [], "status": "completed", "metadata": dict(checkout.metadata),
            "mode": "test",
        }

    # -- webhooks ------------------------------------------------------------------------

    def _emit(self, event_type: str, obj: dict[str, Any],
              subscription: StoredSubscription) -> SentEvent:
        with self.lock:
            created_at = max(epoch_ms(self.clock()), self._last_ms + 1)
            self._last_ms = created_at
            body = encode(event_envelope(event_type, obj, created_at))
            event = SentEvent(json.loads(body)["id"], event_type, created_at, body,
                              sign(body, self.webhook_secret),
                              self.webhook_url or subscription.app_origin + WEBHOOK_PATH)
            self.events.append(event)
            if self.holding:
                self.held.append(event)
            elif self.deliver:
                self._schedule(event, self.delivery_delay, 0)
            return event

    def event(self, event_id: str) -> SentEvent:
        """Raises StandInError (404) for an unknown event."""
        with self.lock:
            for event in self.events:
                if event.id == event_id:
                    return event
        raise StandInError(404, f"Event {event_id} not found.")

    def redeliver(self, event_id: str, times: int = 1) -> SentEvent:
        """Send an event again, `times` times (a duplicate, as Creem may send)."""
        event = self.event(event_id)
        for _ in range(times):
            if self.deliver:
                self._schedule(event, 0, len(self.retry_delays))
        return event

    def hold(self) -> None:
        """Keep new events back until `release` (to send them out of order)."""
        with self.lock:
            self.holding = True

    def release(self, order: str = "in_order", seed: int | None = None) -> list[SentEvent]:
        """Send the held events `in_order`, `reversed` or `shuffled`; returns them in that order.

        Raises StandInError (400) for an unknown order.
        """
        with self.lock:
            events, self.held, self.holding = list(self.held), [], False
        if order == "reversed":
            events.reverse()
        elif order == "shuffled":
            random.Random(seed).shuffle(events)
        elif order != "in_order":
            raise StandInError(400, f"Unknown order {order!r}.")
        if self.deliver:
            for event in events:
                self._send(event, len(self.retry_delays))
        return events

    def _schedule(self, event: SentEvent, delay: float, attempt: int) -> None:
        timer = threading.Timer(delay, self._send, args=(event, attempt))
        timer.daemon = True
        timer.start()

    def _send(self, event: SentEvent, attempt: int) -> None:
        """POST the event once; after a non-200, schedule the next retry, as Creem does."""
        with self.lock:
            if self._http is None:
                self._http = httpx.Client(timeout=10.0)
            http = self._http
        try:
            status: int | str = http.post(event.url, content=event.body,
                                          headers=event.headers).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        with self.lock:
            event.statuses.append(status)
        if status != 200 and attempt < len(self.retry_delays):
            self._schedule(event, self.retry_delays[attempt], attempt + 1)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def create_stand_in_app(stand_in: CreemStandIn | None = None, **options: Any) -> Flask:
    """A Flask app serving `stand_in` (or a new CreemStandIn built with `options`).

    Its CreemStandIn is `get_stand_in(app)`.
    """
    app = Flask(__name__)
    app.extensions["creem_stand_in"] = stand_in or CreemStandIn(**options)
    app.add_url_rule("/v1/checkouts", view_func=_api_create_checkout, methods=["POST"])
    app.add_url_rule("/v1/subscriptions", view_func=_api_get_subscription)
    app.add_url_rule("/v1/subscriptions/<subscription_id>/cancel",
                     view_func=_api_cancel_subscription, methods=["POST"])
    app.add_url_rule("/v1/subscriptions/<subscription_id>/resume",
                     view_func=_api_resume_subscription, methods=["POST"])
    app.add_url_rule("/v1/customers/billing", view_func=_api_customer_portal, methods=["POST"])
    app.add_url_rule("/checkout/<checkout_id>", view_func=_checkout_page)
    app.add_url_rule("/checkout/<checkout_id>/pay", view_func=_checkout_pay, methods=["POST"])
    app.add_url_rule("/checkout/<checkout_id>/cancel", view_func=_checkout_cancel,
                     methods=["POST"])
    app.add_url_rule("/portal/<customer_id>", view_func=_portal_page)
    app.add_url_rule("/", view_func=_control_page)
    app.add_url_rule("/stand-in/subscriptions/<subscription_id>/<action>",
                     view_func=_control_act, methods=["POST"])
    app.add_url_rule("/stand-in/events/<event_id>/redeliver", view_func=_control_redeliver,
                     methods=["POST"])
    app.add_url_rule("/stand-in/hold", view_func=_control_hold, methods=["POST"])
    app.add_url_rule("/stand-in/release", view_func=_control_release, methods=["POST"])
    app.add_url_rule("/stand-in/events", view_func=_control_events)
    app.register_error_handler(StandInError, _stand_in_error)
    app.before_request(_count_and_fail)
    return app


def get_stand_in(app: Flask) -> CreemStandIn:
    """The CreemStandIn of an app made by create_stand_in_app. Raises KeyError for others."""
    return app.extensions["creem_stand_in"]


@contextmanager
def serve_stand_in(app: Flask | None = None, host: str = "127.0.0.1",
                   **options: Any) -> Iterator[str]:
    """Serve `app` (or a new stand-in built with `options`) on a free port in a thread; any
    Flask app can be served (tests serve their webhook receivers with it).

    Yields the base URL, e.g. `http://127.0.0.1:54321`; stops the server on exit.
    """
    app = app or create_stand_in_app(**options)
    try:
        with serve_in_thread(app, host, "creem-stand-in") as url:
            yield url
    finally:
        if "creem_stand_in" in app.extensions:
            get_stand_in(app).close()


def run_stand_in(host: str = "127.0.0.1", port: int = 5056, **options: Any) -> None:
    """Serve a stand-in built with `options` in the foreground until interrupted."""
    app = create_stand_in_app(**options)
    server = make_server(host, port, app, threaded=True)
    print(f"Creem stand-in on http://{host}:{server.server_port} (control page at /); "
          f"the app finds it with CREEM_API_URL=http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        get_stand_in(app).close()


def _stand_in() -> CreemStandIn:
    return get_stand_in(current_app)


def _stand_in_error(error: StandInError) -> tuple[Response, int]:
    return jsonify({"status": error.status, "error": "Bad Request" if error.status == 400
                    else "Error", "message": [error.message]}), error.status


def _count_and_fail() -> tuple[Response, int] | None:
    """Record API calls; answer the next `fail_next_requests` of them 503 (for retry tests)."""
    if not request.path.startswith("/v1/"):
        return None
    stand_in = _stand_in()
    with stand_in.lock:
        failing = stand_in.fail_next_requests > 0
        if failing:
            stand_in.fail_next_requests -= 1
        stand_in.requests.append((request.method, request.path, 503 if failing else 0))
    if failing:
        return jsonify({"status": 503, "error": "Service Unavailable"}), 503
    if not request.headers.get("x-api-key"):
        return jsonify({"status": 401, "error": "Unauthorized",
                        "message": ["The API key is missing."]}), 401
    if not hmac.compare_digest(request.headers["x-api-key"], stand_in.api_key):
        return jsonify({"status": 403, "error": "Forbidden",
                        "message": ["The API key is not valid."]}), 403
    return None


def _api_create_checkout() -> tuple[Response, int]:
    checkout = _stand_in().create_checkout(request.get_json(silent=True))
    return jsonify({
        "id": checkout.id, "object": "checkout", "product": checkout.product_id,
        "status": checkout.status, "request_id": checkout.request_id,
        "success_url": checkout.success_url, "metadata": checkout.metadata, "mode": "test",
        "checkout_url": request.host_url + f"checkout/{checkout.id}",
    }), 200


def _api_get_subscription() -> Response:
    stand_in = _stand_in()
    subscription = stand_in.subscription(request.args.get("subscription_id", ""))
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _api_cancel_subscription(subscription_id: str) -> Response:
    body = request.get_json(silent=True) or {}
    mode = body.get("mode", "immediate") if isinstance(body, dict) else None
    if mode not in ("scheduled", "immediate"):
        raise StandInError(400, "mode must be scheduled or immediate.")
    stand_in = _stand_in()
    subscription = stand_in.act(subscription_id, f"cancel-{mode}")
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _api_resume_subscription(subscription_id: str) -> Response:
    stand_in = _stand_in()
    subscription = stand_in.act(subscription_id, "resume")
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _api_customer_portal() -> Response:
    body = request.get_json(silent=True)
    customer_id = body.get("customer_id") if isinstance(body, dict) else None
    if customer_id not in _stand_in().customers.values():
        raise StandInError(404, f"Customer {customer_id!r} not found.")
    return jsonify({"customer_portal_link": request.host_url + f"portal/{customer_id}"})


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:760px;margin:2rem auto;padding:0 1rem;
color:#1d1d1f}}.box{{border:1px solid #ddd;border-radius:12px;padding:1.25rem;margin:1rem 0}}
button{{font:inherit;padding:.5rem 1rem;border-radius:8px;border:1px solid #999;cursor:pointer;
margin:.15rem}}input{{font:inherit;padding:.3rem .5rem;width:22rem;max-width:100%}}
.pay{{background:#1f6feb;color:#fff;border-color:#1f6feb}}
.note{{color:#666;font-size:.9rem}}form{{display:inline}}table{{border-collapse:collapse;
width:100%}}td,th{{text-align:left;padding:.3rem;border-bottom:1px solid #eee;font-size:.9rem}}
</style></head><body><p class="note">Creem stand-in (test mode, no real payments)</p>
{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> tuple[Response, int]:
    return Response(_PAGE.format(title=escape(title), body=body), mimetype="text/html"), status


def _money(product: StandInProduct) -> str:
    period = "year" if product.billing_period == "every-year" else "month"
    return f"{product.price / 100:.2f} {product.currency} / {period}"


def _checkout_page(checkout_id: str) -> tuple[Response, int]:
    stand_in = _stand_in()
    with stand_in.lock:
        checkout = stand_in._checkout(checkout_id)
        product = stand_in.products[checkout.product_id]
        if checkout.status != "pending":
            return _page("Checkout closed", f"<h1>This checkout is {escape(checkout.status)}"
                                            "</h1>", 409)
        email = escape(checkout.customer_email or "")
    return _page(f"Pay for {product.name}", f"""
<h1>Subscribe to {escape(product.name)}</h1>
<div class="box"><p><strong>{escape(_money(product))}</strong></p>
<form method="post" action="/checkout/{escape(checkout_id)}/pay">
<p><label>Email <input name="email" type="email" value="{email}" required></label></p>
<p><label>Card <input name="card" value="4242 4242 4242 4242" readonly></label></p>
<button class="pay" type="submit">Pay</button></form>
<form method="post" action="/checkout/{escape(checkout_id)}/cancel">
<button type="submit">Cancel</button></form></div>""")


def _checkout_pay(checkout_id: str) -> Response:
    return redirect(_stand_in().pay(checkout_id, request.form.get("email")), code=303)


def _checkout_cancel(checkout_id: str) -> Response:
    return redirect(_stand_in().cancel_checkout(checkout_id), code=303)


def _action_button(subscription_id: str, action: str, label: str | None = None) -> str:
    return (f'<form method="post" action="/stand-in/subscriptions/{escape(subscription_id)}/'
            f'{action}"><button type="submit">{escape(label or action)}</button></form>')


def _subscription_rows(subscriptions: list[StoredSubscription], actions: tuple[str, ...]) -> str:
    rows = []
    for sub in subscriptions:
        buttons = "".join(_action_button(sub.id, action) for action in actions)
        rows.append(f"<tr><td>{escape(sub.id)}<br><span class='note'>"
                    f"{escape(sub.customer_email)}</span></td><td>{escape(sub.product.name)}</td>"
                    f"<td>{escape(sub.status)}</td><td>{iso(sub.current_period_end)}</td>"
                    f"<td>{buttons}</td></tr>")
    return ("<table><tr><th>Subscription</th><th>Product</th><th>Status</th>"
            "<th>Period end</th><th></th></tr>" + "".join(rows) + "</table>")


def _portal_page(customer_id: str) -> tuple[Response, int]:
    stand_in = _stand_in()
    with stand_in.lock:
        mine = [sub for sub in stand_in.subscriptions.values() if sub.customer_id == customer_id]
        if not mine:
            raise StandInError(404, f"Customer {customer_id} not found.")
        table = _subscription_rows(mine, ("cancel-scheduled", "resume"))
        back = escape(mine[0].app_origin + "/dashboard/subscription")
    return _page("Billing portal", f"<h1>Your billing</h1>{table}"
                                   f'<p><a href="{back}">Back to the app</a></p>')


def _control_page() -> tuple[Response, int]:
    stand_in = _stand_in()
    with stand_in.lock:
        table = _subscription_rows(list(stand_in.subscriptions.values()), SUBSCRIPTION_ACTIONS)
        events = "".join(
            f"<tr><td>{escape(event.id)}</td><td>{escape(event.event_type)}</td>"
            f"<td>{escape(', '.join(map(str, event.statuses)) or 'pending')}</td>"
            f'<td><form method="post" action="/stand-in/events/{escape(event.id)}/redeliver">'
            f'<button type="submit">send again</button></form></td></tr>'
            for event in reversed(stand_in.events[-50:])
        )
        holding = "holding events" if stand_in.holding else "sending events as they happen"
    return _page("Creem stand-in", f"""<h1>Creem stand-in</h1>
<h2>Subscriptions</h2>{table}
<h2>Webhooks ({holding})</h2>
<form method="post" action="/stand-in/hold"><button type="submit">hold new events</button></form>
<form method="post" action="/stand-in/release?order=in_order"><button>release in order</button>
</form><form method="post" action="/stand-in/release?order=reversed">
<button type="submit">release reversed</button></form>
<form method="post" action="/stand-in/release?order=shuffled">
<button type="submit">release shuffled</button></form>
<table><tr><th>Event</th><th>Type</th><th>Deliveries</th><th></th></tr>{events}</table>""")


def _wants_html() -> bool:
    return request.accept_mimetypes.best == "text/html"


def _control_act(subscription_id: str, action: str) -> Response:
    stand_in = _stand_in()
    subscription = stand_in.act(subscription_id, action)
    if _wants_html():
        return redirect("/", code=303)
    with stand_in.lock:
        return jsonify(stand_in.subscription_object(subscription))


def _control_redeliver(event_id: str) -> Response:
    times = request.args.get("times", "1")
    if not times.isdigit() or not 1 <= int(times) <= 100:
        raise StandInError(400, "times must be between 1 and 100.")
    event = _stand_in().redeliver(event_id, int(times))
    if _wants_html():
        return redirect("/", code=303)
    return jsonify({"id": event.id, "times": int(times)})


def _control_hold() -> Response:
    _stand_in().hold()
    return redirect("/", code=303) if _wants_html() else jsonify({"holding": True})


def _control_release() -> Response:
    seed = request.args.get("seed")
    events = _stand_in().release(request.args.get("order", "in_order"),
                                 int(seed) if seed and seed.isdigit() else None)
    if _wants_html():
        return redirect("/", code=303)
    return jsonify({"released": [event.id for event in events]})


def _control_events() -> Response:
    stand_in = _stand_in()
    with stand_in.lock:
        return jsonify([{"id": event.id, "type": event.event_type,
                         "created_at": event.created_at, "statuses": event.statuses}
                        for event in stand_in.events])


def main(argv: list[str] | None = None) -> None:
    from credit_app.config import creem_dev_webhook_secret

    parser = argparse.ArgumentParser(description="Serve the Creem stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5056)
    parser.add_argument("--api-key", default=CREEM_STAND_IN_API_KEY)
    parser.add_argument("--webhook-secret", default=None,
                        help="default: the app's dev secret in instance/dev-creem-webhook-secret")
    parser.add_argument("--webhook-url", default=None,
                        help=f"default: {WEBHOOK_PATH} on each checkout's success_url origin")
    parser.add_argument("--delivery-delay", type=float, default=1.0,
                        help="seconds between a change and its webhook (default 1)")
    args = parser.parse_args(argv)
    run_stand_in(args.host, args.port, api_key=args.api_key,
                 webhook_secret=args.webhook_secret or creem_dev_webhook_secret(),
                 webhook_url=args.webhook_url, delivery_delay=args.delivery_delay)


if __name__ == "__main__":
    main()
