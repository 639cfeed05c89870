"""Starting a Creem checkout, and checking the way back from it.

The success redirect only shapes what the user reads ("Payment received"); Pro comes from the
webhooks. A redirect counts as this user's payment only if Creem's signature matches, its
`request_id` is one we made for the signed-in user, and — when this browser started the
checkout — its `checkout_id` is the one Creem gave us for that request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flask import url_for

from credit_app.billing.creem.client import CreemClient
from credit_app.billing.creem.events import verify_redirect
from credit_app.billing.plans import get_plan
from credit_app.billing.subscriptions import creem_client
from credit_app.errors import AlreadySubscribed
from credit_app.generation.features import FEATURES
from credit_app.models import User


@dataclass(frozen=True)
class CheckoutStart:
    checkout_id: str
    checkout_url: str
    request_id: str


def request_id_for(user_id: int) -> str:
    """A fresh request id naming its user: `checkout-<user id>-<random>`."""
    return f"checkout-{user_id}-{uuid.uuid4().hex}"


def request_belongs_to(request_id: str | None, user_id: int) -> bool:
    return request_id is not None and request_id.startswith(f"checkout-{user_id}-")


def start_checkout(
    user: User, plan: str, return_to: str | None, client: CreemClient | None = None
) -> CheckoutStart:
    """Open a Creem checkout for `plan`; after paying, the user comes back to the feature
    `return_to` (a feature key; anything else brings them back to the subscription page).

    Raises UnknownPlan, AlreadySubscribed (the user is Pro), CreemError.
    """
    chosen = get_plan(plan)
    if user.is_pro:
        raise AlreadySubscribed("You already have Pro: manage it on this page.")
    return open_checkout(user, chosen.product_id, {"plan": chosen.key}, return_to, client)


def open_checkout(
    user: User,
    product_id: str,
    metadata: dict[str, str],
    return_to: str | None,
    client: CreemClient | None = None,
) -> CheckoutStart:
    """Open a Creem checkout of `product_id` for `user`, tagged with `metadata` besides the
    user and the feature; after paying, the user comes back to the feature `return_to` (a
    feature key; anything else brings them back to the subscription page).

    Raises CreemError.
    """
    feature = return_to if return_to in FEATURES else None
    request_id = request_id_for(user.id)
    tags = {"user_id": str(user.id), **metadata, "feature": feature or ""}
    success_url = url_for("billing.checkout_return", feature=feature, _external=True)
    creem = client or creem_client()
    checkout = creem.create_checkout(
        product_id, request_id, success_url, customer_email=user.email, metadata=tags
    )
    return CheckoutStart(checkout.id, checkout.checkout_url, request_id)


def is_own_return(
    params: Iterable[tuple[str, str]], api_key: str, user_id: int, started: Mapping[str, str]
) -> bool:
    """Whether the redirect's parameters are Creem's signed word that `user_id` paid.

    `started` maps the request ids this browser's checkouts used to their checkout ids.
    """
    pairs = list(params)
    if not verify_redirect(pairs, api_key):
        return False
    values = dict(pairs)
    request_id, checkout_id = values.get("request_id"), values.get("checkout_id")
    if request_id is None or not request_belongs_to(request_id, user_id):
        return False
    expected = started.get(request_id)
    return expected is None or expected == checkout_id
