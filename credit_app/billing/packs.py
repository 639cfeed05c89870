"""Top-up credit packs: starting a pack's Creem checkout, granting a paid order once, and
taking a refunded pack's unspent credits back.

A pack is a Creem one-time product (billing/plans.py `packs`). Its `checkout.completed`
carries the order (no subscription); the grant is keyed by the order id
(`credits.grant_pack`), so a retry, a replay under another event id or a duplicate
delivery grants nothing twice. `refund.created` for a pack's order takes its credits back
(`credits.refund_pack`).
"""

from __future__ import annotations

import math

from credit_app.billing.checkout import CheckoutStart, open_checkout, request_belongs_to
from credit_app.billing.creem.client import CreemClient
from credit_app.billing.plans import get_pack, pack_for_product
from credit_app.errors import AlreadySubscribed, PackNotGranted, WebhookEventUnresolved
from credit_app.models import CreditLot, User, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.services import credits


def start_pack_checkout(
    user: User, pack_key: str, return_to: str | None, client: CreemClient | None = None
) -> CheckoutStart:
    """Open a Creem checkout for credit pack `pack_key`; after paying, the user comes back to
    the feature `return_to` (a feature key; anything else: the subscription page).

    Raises UnknownPack, AlreadySubscribed (Pro needs no credits), CreemError.
    """
    pack = get_pack(pack_key)
    if user.is_pro:
        raise AlreadySubscribed("Pro is unlimited: you do not need credit packs.")
    return open_checkout(user, pack.product_id, {"pack": pack.key}, return_to, client)


def is_pack_event(event: WebhookEvent) -> bool:
    """Whether a stored checkout or refund event is about a credit pack's order."""
    if event.order_id is None or event.creem_subscription_id is not None:
        return False
    if pack_for_product(event.product_id) is not None:
        return True
    return db.session.query(
        db.session.query(CreditLot.id).filter(CreditLot.creem_order_id == event.order_id).exists()
    ).scalar()


def _buyer(event: WebhookEvent) -> int:
    """The user who bought: the checkout's metadata, else its request id (both ours).

    Raises WebhookEventUnresolved.
    """
    if event.metadata_user_id is not None:
        return int(event.metadata_user_id)
    request_id = event.request_id or ""
    parts = request_id.split("-")
    if len(parts) == 3 and parts[1].isdigit() and request_belongs_to(request_id, int(parts[1])):
        return int(parts[1])
    raise WebhookEventUnresolved(f"The pack order {event.order_id} names no user.")


def _order_id(event: WebhookEvent) -> str:
    """The pack order the event is about. Raises WebhookEventUnresolved (it names none)."""
    if event.order_id is None:
        raise WebhookEventUnresolved(f"The event {event.event_id} names no order.")
    return event.order_id


def apply_pack_order(event: WebhookEvent) -> str:
    """Grant the pack a stored `checkout.completed` paid for, once per order.

    Raises WebhookEventUnresolved (no user or order, or not a pack this store sells),
    UserNotFound.
    """
    pack = pack_for_product(event.product_id)
    if pack is None:
        raise WebhookEventUnresolved(f"Product {event.product_id!r} is not a credit pack.")
    return credits.grant_pack(
        _buyer(event),
        _order_id(event),
        pack.credits,
        pack=pack.key,
        product_id=pack.product_id,
        event_id=event.event_id,
    )


def apply_pack_refund(event: WebhookEvent) -> str:
    """Take back what a stored `refund.created` refunded of a pack: everything for a full
    refund, the refunded share (rounded up) for a partial one.

    Raises WebhookEventUnresolved (no order, or the order's pack is not granted yet: the
    retry finds it).
    """
    owed = None
    if (
        event.amount_paid
        and event.amount_refunded is not None
        and event.amount_refunded < event.amount_paid
    ):
        lot = db.session.query(CreditLot).filter_by(creem_order_id=event.order_id).one_or_none()
        if lot is not None:
            owed = math.ceil(lot.granted * event.amount_refunded / event.amount_paid)
    try:
        return credits.refund_pack(_order_id(event), owed, event_id=event.event_id).outcome
    except PackNotGranted as exc:
        raise WebhookEventUnresolved(exc.message) from None
