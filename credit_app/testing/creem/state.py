"""The Creem stand-in's state machine: products, checkouts, subscriptions, and the signed
webhooks each change sends.

Pay on a checkout creates the customer, order and subscription and sends what Creem sends
(`checkout.completed`, `subscription.active`, `subscription.paid`). Later in a subscription's
life, `act` renews, cancels (at the period end, or at once: a `subscription.canceled` that
keeps the real `current_period_end_date`, as Creem's own sample does), resumes, goes past
due, unpaid, paused or expired, refunds, disputes and switches plans (`upgrade`, Creem's
`POST /v1/subscriptions/{id}/upgrade`). Each event's object has the keys of Creem's documented
sample for that event type (`samples/`), so `subscription.active`, `.expired`, `.update`,
`.trialing` and `.paused` carry no metadata, as Creem's do; `send_sample` sends a sample
itself, re-pointed at one of the stand-in's subscriptions.

Every event is signed like Creem signs (`billing/creem/events.sign_body`) and delivered to the
webhook URL, retried after `retry_delays` seconds when not answered 200; tests usually set
`deliver=False` and post the collected `events` themselves. `hold` and `release` send held
events in order, reversed or shuffled.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from credit_app.billing.creem.events import (
    EVENT_TYPES,
    SIGNATURE_HEADER,
    UPDATE_BEHAVIORS,
    redirect_signature,
    sign_body,
)
from credit_app.platform.config import (
    CREDIT_PACK_DEFAULTS,
    CREEM_STAND_IN_API_KEY,
    CREEM_STAND_IN_PRODUCTS,
)

WEBHOOK_PATH = "/billing/webhooks/creem"
SAMPLES_DIR = Path(__file__).with_name("samples")
# Creem's documented retry schedule (its webhook reference): 30 s, 5 min, 30 min, 6 h.
RETRY_DELAYS: tuple[float, ...] = (30, 300, 1800, 21600)
SUBSCRIPTION_ACTIONS: tuple[str, ...] = (
    "renew",
    "end-period",
    "cancel-scheduled",
    "cancel-immediate",
    "resume",
    "past-due",
    "unpaid",
    "pause",
    "expire",
    "refund",
    "partial-refund",
    "dispute",
    "switch-plan",
)
OTHER_PRODUCT_ID = "prod_standin_other"


@dataclass(frozen=True)
class StandInProduct:
    id: str
    name: str
    price: int
    currency: str
    billing_period: str
    billing_type: str = "recurring"

    @property
    def period(self) -> timedelta:
        return timedelta(days=365 if self.billing_period == "every-year" else 30)

    @property
    def one_time(self) -> bool:
        return self.billing_type == "onetime"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "product",
            "name": self.name,
            "description": self.name,
            "price": self.price,
            "currency": self.currency,
            "billing_type": self.billing_type,
            "billing_period": self.billing_period,
            "status": "active",
            "mode": "test",
        }


# The two Pro plans the app is configured with, and another product of the same store (which
# must not give Pro).
DEFAULT_PRODUCTS: dict[str, StandInProduct] = {
    product.id: product
    for product in (
        StandInProduct(
            CREEM_STAND_IN_PRODUCTS["CREEM_PRODUCT_PRO_MONTHLY"],
            "Pro monthly",
            1900,
            "USD",
            "every-month",
        ),
        StandInProduct(
            CREEM_STAND_IN_PRODUCTS["CREEM_PRODUCT_PRO_YEARLY"],
            "Pro yearly",
            19000,
            "USD",
            "every-year",
        ),
        StandInProduct(OTHER_PRODUCT_ID, "Storage add-on", 500, "USD", "every-month"),
        # The credit packs (config.py CREDIT_PACK_DEFAULTS): one-time products.
        *(
            StandInProduct(
                product_id,
                f"{credits} credits",
                round(float(price.lstrip("$")) * 100),
                "USD",
                "once",
                "onetime",
            )
            for _, _, credits, price, product_id in CREDIT_PACK_DEFAULTS
        ),
    )
}
PRO_SWITCHES: dict[str, str] = {
    CREEM_STAND_IN_PRODUCTS["CREEM_PRODUCT_PRO_MONTHLY"]: CREEM_STAND_IN_PRODUCTS[
        "CREEM_PRODUCT_PRO_YEARLY"
    ],
    CREEM_STAND_IN_PRODUCTS["CREEM_PRODUCT_PRO_YEARLY"]: CREEM_STAND_IN_PRODUCTS[
        "CREEM_PRODUCT_PRO_MONTHLY"
    ],
}


@cache
def sample(event_type: str) -> dict[str, Any]:
    """Creem's documented sample body for `event_type`. Raises StandInError (404)."""
    if event_type not in EVENT_TYPES:
        raise StandInError(404, f"No sample for {event_type!r}.")
    return json.loads((SAMPLES_DIR / f"{event_type}.json").read_text())


def _shaped_like(obj: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """`obj` with only the top-level keys Creem's sample object has (its shape)."""
    return {key: value for key, value in obj.items() if key in model}


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
class StoredOrder:
    """A paid order of a one-time product (a credit pack): what a refund is about."""

    id: str
    product: StandInProduct
    customer_id: str
    customer_email: str
    checkout_id: str
    transaction_id: str
    app_origin: str
    created_at: datetime
    refunded: int = 0


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
        return {"content-type": "application/json", SIGNATURE_HEADER: self.signature}


class StandInError(Exception):
    """An action the stand-in refuses, as Creem would (the status is the HTTP answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def event_envelope(
    event_type: str, obj: dict[str, Any], created_at: int, event_id: str | None = None
) -> dict[str, Any]:
    """A Creem webhook envelope around `obj`; `created_at` is in epoch milliseconds."""
    return {
        "id": event_id or new_id("evt"),
        "eventType": event_type,
        "created_at": created_at,
        "object": obj,
    }


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
        self.orders: dict[str, StoredOrder] = {}
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
            "http",
            "https",
        ):
            raise StandInError(400, "success_url must be an http(s) URL.")
        customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
        with self.lock:
            for checkout in self.checkouts.values():
                if request_id and checkout.request_id == request_id:
                    return checkout
            checkout = StoredCheckout(
                new_id("ch"), product_id, request_id, success_url, metadata, customer.get("email")
            )
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
            if product.one_time:
                return self._pay_once(checkout, product, customer_id, email, now)
            subscription = StoredSubscription(
                id=new_id("sub"),
                product=product,
                customer_id=customer_id,
                customer_email=email,
                metadata=dict(checkout.metadata),
                app_origin=origin_of(checkout.success_url),
                status="active",
                current_period_start=now,
                current_period_end=now + product.period,
                created_at=now,
                updated_at=now,
                last_transaction_id=new_id("tran"),
            )
            self.subscriptions[subscription.id] = subscription
            checkout.status = "completed"
            checkout.order_id, checkout.customer_id = new_id("ord"), customer_id
            checkout.subscription_id = subscription.id
            self._emit(
                "checkout.completed", self._checkout_object(checkout, subscription), subscription
            )
            self._emit("subscription.active", self.subscription_object(subscription), subscription)
            self._emit("subscription.paid", self.subscription_object(subscription), subscription)
            return self._success_redirect(checkout)

    def _pay_once(
        self,
        checkout: StoredCheckout,
        product: StandInProduct,
        customer_id: str,
        email: str,
        now: datetime,
    ) -> str:
        """A one-time product's payment: an order and `checkout.completed` (no subscription,
        as Creem sends for one-time products)."""
        order = StoredOrder(
            new_id("ord"),
            product,
            customer_id,
            email,
            checkout.id,
            new_id("tran"),
            origin_of(checkout.success_url),
            now,
        )
        self.orders[order.id] = order
        checkout.status = "completed"
        checkout.order_id, checkout.customer_id = order.id, customer_id
        self._send_envelope(
            "checkout.completed",
            {
                "id": checkout.id,
                "object": "checkout",
                "request_id": checkout.request_id,
                "order": self._order_object(order),
                "product": product.to_dict(),
                "customer": self._order_customer(order),
                "custom_fields": [],
                "status": "completed",
                "metadata": dict(checkout.metadata),
                "mode": "test",
            },
            order.app_origin,
        )
        return self._success_redirect(checkout)

    def order(self, order_id: str) -> StoredOrder:
        """Raises StandInError (404) for an unknown order."""
        with self.lock:
            found = self.orders.get(order_id)
        if found is None:
            raise StandInError(404, f"Order {order_id} not found.")
        return found

    def refund_order(self, order_id: str, amount: int | None = None) -> SentEvent:
        """Refund a one-time order, all of it or `amount` cents, and send `refund.created`.

        Raises StandInError (404) for an unknown order, (400) for more than is left.
        """
        with self.lock:
            order = self.order(order_id)
            amount = order.product.price - order.refunded if amount is None else amount
            if not 0 < amount <= order.product.price - order.refunded:
                raise StandInError(400, "The refund exceeds what is left of the order.")
            order.refunded += amount
            transaction = {
                "id": order.transaction_id,
                "object": "transaction",
                "amount": order.product.price,
                "amount_paid": order.product.price,
                "currency": order.product.currency,
                "type": "payment",
                "status": "refunded"
                if order.refunded == order.product.price
                else "partially_refunded",
                "refunded_amount": order.refunded,
                "order": order.id,
                "customer": order.customer_id,
                "mode": "test",
            }
            return self._send_envelope(
                "refund.created",
                {
                    "id": new_id("ref"),
                    "object": "refund",
                    "status": "succeeded",
                    "refund_amount": amount,
                    "refund_currency": order.product.currency,
                    "reason": "requested_by_customer",
                    "transaction": transaction,
                    "checkout": order.checkout_id,
                    "order": self._order_object(order),
                    "customer": self._order_customer(order),
                    "created_at": epoch_ms(self.clock()),
                    "mode": "test",
                },
                order.app_origin,
            )

    def _order_object(self, order: StoredOrder) -> dict[str, Any]:
        return {
            "id": order.id,
            "customer": order.customer_id,
            "product": order.product.id,
            "amount": order.product.price,
            "currency": order.product.currency,
            "status": "paid",
            "type": "onetime",
            "created_at": iso(order.created_at),
            "updated_at": iso(order.created_at),
            "mode": "test",
        }

    @staticmethod
    def _order_customer(order: StoredOrder) -> dict[str, Any]:
        return {
            "id": order.customer_id,
            "object": "customer",
            "email": order.customer_email,
            "name": None,
            "country": "NL",
            "mode": "test",
        }

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
        params = [
            ("checkout_id", checkout.id),
            ("order_id", checkout.order_id),
            ("customer_id", checkout.customer_id),
            ("subscription_id", checkout.subscription_id),
            ("product_id", checkout.product_id),
            ("request_id", checkout.request_id),
        ]
        params = [(key, value) for key, value in params if value]
        params.append(("signature", redirect_signature(params, self.api_key)))
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
            "switch-plan": lambda sub: self._upgrade(
                sub, PRO_SWITCHES.get(sub.product.id, ""), "proration-charge-immediately"
            ),
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
            self._emit(
                "subscription.canceled", self.subscription_object(subscription), subscription
            )
        else:
            self._renew(subscription)

    def _cancel(self, subscription: StoredSubscription, mode: str) -> None:
        if subscription.status in ("canceled", "expired"):
            raise StandInError(400, "The subscription is already canceled.")
        now = self._touch(subscription)
        subscription.canceled_at = now
        if mode == "scheduled":
            subscription.status = "scheduled_cancel"
            self._emit(
                "subscription.scheduled_cancel",
                self.subscription_object(subscription),
                subscription,
            )
        else:
            # Creem's subscription.canceled keeps the paid period's end (its sample does).
            subscription.status = "canceled"
            self._emit(
                "subscription.canceled", self.subscription_object(subscription), subscription
            )

    def _resume(self, subscription: StoredSubscription) -> None:
        if subscription.status not in ("scheduled_cancel", "paused"):
            raise StandInError(
                400, f"A subscription that is {subscription.status} cannot be resumed."
            )
        self._touch(subscription)
        subscription.status, subscription.canceled_at = "active", None
        self._emit("subscription.update", self.subscription_object(subscription), subscription)

    def upgrade(self, subscription_id: str, body: Any) -> StoredSubscription:
        """Move a subscription to another product, as `POST /v1/subscriptions/{id}/upgrade`.

        Raises StandInError (400) for a bad body or a subscription that is not running,
        (404) for an unknown subscription or product.
        """
        if not isinstance(body, dict):
            raise StandInError(400, "The request body must be a JSON object.")
        behavior = body.get("update_behavior", "proration-charge-immediately")
        with self.lock:
            subscription = self.subscription(subscription_id)
            self._upgrade(subscription, body.get("product_id"), behavior)
            return subscription

    def _upgrade(self, subscription: StoredSubscription, product_id: Any, behavior: Any) -> None:
        """Switch products; `proration-charge-immediately` charges the difference now and
        starts a new period of the new product (what the stand-in assumes Creem does)."""
        if behavior not in UPDATE_BEHAVIORS:
            raise StandInError(400, f"update_behavior must be one of {UPDATE_BEHAVIORS}.")
        if not isinstance(product_id, str) or product_id not in self.products:
            raise StandInError(404, f"Product {product_id!r} not found.")
        if subscription.status not in ("active", "trialing"):
            raise StandInError(
                400, f"A subscription that is {subscription.status} cannot change products."
            )
        if product_id == subscription.product.id:
            raise StandInError(400, "The subscription is on that product already.")
        now = self._touch(subscription)
        subscription.product = self.products[product_id]
        if behavior == "proration-charge-immediately":
            subscription.current_period_start = now
            subscription.current_period_end = now + subscription.product.period
            subscription.last_transaction_id = new_id("tran")
        self._emit("subscription.update", self.subscription_object(subscription), subscription)
        if behavior == "proration-charge-immediately":
            self._emit("subscription.paid", self.subscription_object(subscription), subscription)

    def _set_status(self, subscription: StoredSubscription, status: str, event: str) -> None:
        self._touch(subscription)
        subscription.status = status
        self._emit(event, self.subscription_object(subscription), subscription)

    def _transaction(self, subscription: StoredSubscription) -> dict[str, Any]:
        return {
            "id": subscription.last_transaction_id,
            "object": "transaction",
            "amount": subscription.product.price,
            "amount_paid": subscription.product.price,
            "currency": subscription.product.currency,
            "type": "invoice",
            "status": "paid",
            "subscription": subscription.id,
            "customer": subscription.customer_id,
            "mode": "test",
        }

    def _refund(self, subscription: StoredSubscription, *, full: bool) -> None:
        amount = subscription.product.price if full else subscription.product.price // 4
        self._emit_charge_event(
            "refund.created",
            {
                "id": new_id("ref"),
                "object": "refund",
                "status": "succeeded",
                "refund_amount": amount,
                "refund_currency": subscription.product.currency,
                "reason": "requested_by_customer",
            },
            subscription,
        )

    def _dispute(self, subscription: StoredSubscription) -> None:
        self._emit_charge_event(
            "dispute.created",
            {
                "id": new_id("disp"),
                "object": "dispute",
                "amount": subscription.product.price,
                "currency": subscription.product.currency,
            },
            subscription,
        )

    def _emit_charge_event(
        self, event_type: str, fields: dict[str, Any], subscription: StoredSubscription
    ) -> None:
        """Emit an event about the subscription's last charge (a refund, a dispute): `fields`,
        then the transaction, subscription and customer it is about, stamped now."""
        self._emit(
            event_type,
            {
                **fields,
                "transaction": self._transaction(subscription),
                "subscription": self.subscription_object(subscription),
                "customer": self._customer_object(subscription),
                "created_at": epoch_ms(self.clock()),
                "mode": "test",
            },
            subscription,
        )

    # -- payloads ------------------------------------------------------------------------

    def _customer_object(self, subscription: StoredSubscription) -> dict[str, Any]:
        return {
            "id": subscription.customer_id,
            "object": "customer",
            "email": subscription.customer_email,
            "name": None,
            "country": "NL",
            "mode": "test",
        }

    def subscription_object(self, subscription: StoredSubscription) -> dict[str, Any]:
        """The subscription as Creem's API and subscription events show it (expanded)."""
        return {
            "id": subscription.id,
            "object": "subscription",
            "product": subscription.product.to_dict(),
            "customer": self._customer_object(subscription),
            "collection_method": "charge_automatically",
            "status": subscription.status,
            "last_transaction_id": subscription.last_transaction_id,
            # The stand-in bills at the start of each period.
            "last_transaction_date": iso(subscription.current_period_start),
            "items": [
                {
                    "object": "subscription_item",
                    "id": f"sitem_{subscription.id[4:]}",
                    "product_id": subscription.product.id,
                    "price_id": f"pprice_{subscription.product.id[5:]}",
                    "units": 1,
                    "created_at": iso(subscription.created_at),
                    "updated_at": iso(subscription.updated_at),
                    "mode": "test",
                }
            ],
            "current_period_start_date": iso(subscription.current_period_start),
            "current_period_end_date": iso(subscription.current_period_end),
            "next_transaction_date": (
                None if subscription.status != "active" else iso(subscription.current_period_end)
            ),
            "canceled_at": iso(subscription.canceled_at),
            "created_at": iso(subscription.created_at),
            "updated_at": iso(subscription.updated_at),
            "metadata": dict(subscription.metadata),
            "mode": "test",
        }

    def _checkout_object(
        self, checkout: StoredCheckout, subscription: StoredSubscription
    ) -> dict[str, Any]:
        product = subscription.product
        return {
            "id": checkout.id,
            "object": "checkout",
            "request_id": checkout.request_id,
            "order": {
                "id": checkout.order_id,
                "customer": subscription.customer_id,
                "product": product.id,
                "amount": product.price,
                "currency": product.currency,
                "status": "paid",
                "type": "recurring",
                "mode": "test",
            },
            "product": product.to_dict(),
            "customer": self._customer_object(subscription),
            "subscription": {
                "id": subscription.id,
                "object": "subscription",
                "product": product.id,
                "customer": subscription.customer_id,
                "collection_method": "charge_automatically",
                "status": subscription.status,
                "canceled_at": None,
                "created_at": iso(subscription.created_at),
                "updated_at": iso(subscription.updated_at),
                "metadata": dict(subscription.metadata),
                "mode": "test",
            },
            "custom_fields": [],
            "status": "completed",
            "metadata": dict(checkout.metadata),
            "mode": "test",
        }

    # -- webhooks ------------------------------------------------------------------------

    def _emit(
        self, event_type: str, obj: dict[str, Any], subscription: StoredSubscription
    ) -> SentEvent:
        """Sign and send (or hold, or keep) an event; a subscription event's object takes the
        shape of Creem's sample for its type."""
        if event_type.startswith("subscription."):
            obj = _shaped_like(obj, sample(event_type)["object"])
        return self._send_envelope(event_type, obj, subscription.app_origin)

    def send_sample(self, event_type: str, subscription_id: str) -> SentEvent:
        """Send Creem's documented sample of `event_type` as it is, but about one of the
        stand-in's subscriptions: the sample's subscription, customer and product ids become
        that subscription's, with a new event id and created_at. The stand-in's own state
        does not change. Raises StandInError (404)."""
        with self.lock:
            subscription = self.subscription(subscription_id)
            text = json.dumps(sample(event_type)["object"])
            for old, new in self._sample_ids(sample(event_type), subscription).items():
                text = text.replace(f'"{old}"', f'"{new}"')
            return self._send_envelope(event_type, json.loads(text), subscription.app_origin)

    @staticmethod
    def _sample_ids(envelope: dict[str, Any], subscription: StoredSubscription) -> dict[str, str]:
        obj = envelope["object"]
        nested = obj.get("subscription") if isinstance(obj.get("subscription"), dict) else obj
        if envelope["eventType"].startswith("checkout."):
            nested = obj["subscription"]
        ids = {}
        for key, new in (
            ("id", subscription.id),
            ("customer", subscription.customer_id),
            ("product", subscription.product.id),
        ):
            value = nested.get(key)
            old = value.get("id") if isinstance(value, dict) else value
            if isinstance(old, str):
                ids[old] = new
        customer = obj.get("customer")
        if isinstance(customer, dict) and isinstance(customer.get("id"), str):
            ids[customer["id"]] = subscription.customer_id
        return ids

    def _send_envelope(self, event_type: str, obj: dict[str, Any], origin: str) -> SentEvent:
        with self.lock:
            created_at = max(epoch_ms(self.clock()), self._last_ms + 1)
            self._last_ms = created_at
            body = encode(event_envelope(event_type, obj, created_at))
            event = SentEvent(
                json.loads(body)["id"],
                event_type,
                created_at,
                body,
                sign_body(body, self.webhook_secret),
                self.webhook_url or origin + WEBHOOK_PATH,
            )
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
            status: int | str = http.post(
                event.url, content=event.body, headers=event.headers
            ).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        with self.lock:
            event.statuses.append(status)
        if status != 200 and attempt < len(self.retry_delays):
            self._schedule(event, self.retry_delays[attempt], attempt + 1)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
