"""Plans and the user's subscription: checkout with Creem, the way back to the feature that
led here, cancel, resume and plan switch, the billing portal, and Creem's signed webhooks."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required

from credit_app.billing import checkout as billing_checkout
from credit_app.billing import packs, plans, subscriptions, webhooks
from credit_app.billing.creem.events import MAX_WEBHOOK_BYTES, SIGNATURE_HEADER
from credit_app.errors import DomainError, PayloadTooLarge
from credit_app.generation.features import FEATURES, Feature
from credit_app.jobs.webhooks import enqueue_event
from credit_app.models import User
from credit_app.platform.extensions import csrf, db, limiter
from credit_app.services import analytics, credits
from credit_app.web import htmx

bp = Blueprint("billing", __name__)
# Where payment providers post their events: answered in JSON, errors too (web/responses.py).
WEBHOOK_PATH_PREFIX = "/billing/webhooks/"

PENDING_CHECKOUT_KEY = "billing.pending_checkout"
# request_id -> checkout_id of the checkouts this browser started (the last few).
STARTED_CHECKOUTS_KEY = "billing.started_checkouts"
MAX_STARTED_CHECKOUTS = 5
# After this long without the webhook, the page says so and polls less often.
SLOW_CONFIRMATION_SECONDS = 60


def _feature(key: str | None) -> Feature | None:
    return FEATURES.get(key or "")


def _subscription_page(
    status: int = 200, error: str | None = None, feature: Feature | None = None
) -> Response:
    """The page, or (htmx, when the live counter reported a plan change) its plan-dependent
    part, from the same URL."""
    feature = feature or _feature(request.values.get("feature"))
    available = plans.plans()
    template = (
        "billing/_subscription_state.html"
        if htmx.is_htmx_request()
        else "billing/subscription.html"
    )
    page = render_template(
        template,
        from_feature=feature,
        plans=available,
        saving=plans.yearly_saving(available),
        subscription=subscriptions.get_subscription_status(current_user.id),
        balance=credits.get_user_credits(current_user.id),
        confirm_cancel=request.args.get("confirm") == "cancel",
        confirm_switch=request.args.get("confirm") == "switch",
        checkout=request.args.get("checkout"),
        error=error,
    )
    response = htmx.vary_on_htmx(make_response(page, status))
    response.headers["Cache-Control"] = "no-store"
    return response


def _refused(exc: DomainError) -> Response:
    """Show why an action on the subscription page did not happen; nothing was changed."""
    db.session.rollback()
    return _subscription_page(exc.status, exc.message)


def _changed(message: str) -> Response:
    """Commit an action on the subscription page and show the page again, saying what it did."""
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("billing.subscription"), code=303)


@bp.get("/dashboard/subscription")
@login_required
def subscription() -> Response:
    feature = _feature(request.args.get("feature"))
    if request.args.get("source") == "upgrade_modal":
        analytics.track(
            "upgrade_clicked", current_user.id, feature=feature.key if feature else None
        )
        db.session.commit()
    return _subscription_page(feature=feature)


@bp.post("/dashboard/subscription/checkout")
@login_required
def checkout() -> Response:
    """Send the user to Creem's hosted checkout for the chosen plan."""
    return _checkout(billing_checkout.start_checkout, "plan")


@bp.post("/dashboard/subscription/packs/checkout")
@login_required
def pack_checkout() -> Response:
    """Send the user to Creem's hosted checkout for a credit pack (the modal, this page and
    the sidebar post here)."""
    return _checkout(packs.start_pack_checkout, "pack")


def _checkout(
    start: Callable[[User, str, str | None], billing_checkout.CheckoutStart], choice: str
) -> Response:
    """Open a Creem checkout (`start`) for the product the form's `choice` field names and
    send the user there; a refusal shows why on the subscription page."""
    try:
        started = start(current_user, request.form.get(choice, ""), request.form.get("feature"))
    except DomainError as exc:
        return _refused(exc)
    known = dict(session.get(STARTED_CHECKOUTS_KEY) or {})
    known[started.request_id] = started.checkout_id
    session[STARTED_CHECKOUTS_KEY] = dict(list(known.items())[-MAX_STARTED_CHECKOUTS:])
    return redirect(started.checkout_url, code=303)


@bp.get("/dashboard/subscription/return")
@login_required
def checkout_return() -> Response:
    """Where Creem sends the buyer after paying: back to the feature they wanted.

    The signed parameters only shape the message, and only for the user who started that
    checkout (its request_id and checkout id); Pro itself comes from the webhooks.
    """
    feature = _feature(request.args.get("feature"))
    paid = billing_checkout.is_own_return(
        request.args.items(multi=True),
        current_app.config["CREEM_API_KEY"],
        current_user.id,
        session.get(STARTED_CHECKOUTS_KEY) or {},
    )
    if paid:
        pack = plans.pack_for_product(request.args.get("product_id"))
        session[PENDING_CHECKOUT_KEY] = {
            "at": time.time(),
            "checkout_id": request.args.get("checkout_id"),
            "order_id": request.args.get("order_id") if pack else None,
            "pack_credits": pack.credits if pack else None,
        }
        flash(
            "Payment received, thank you!"
            + (f" You are back at {feature.title}." if feature else ""),
            "success",
        )
    target = (
        url_for("dashboard.feature_page", slug=feature.slug, checkout="success" if paid else None)
        if feature
        else url_for("billing.subscription", checkout="success" if paid else None)
    )
    return redirect(target, code=303)


def checkout_confirmation() -> str | None:
    """Where the user's payment stands after a checkout: "confirming" (no webhook yet),
    "slow" (still none after a minute), "welcome" (Pro now; said once), "pack_granted" (the
    credit pack's credits are in; said once), or None."""
    pending = session.get(PENDING_CHECKOUT_KEY)
    if not current_user.is_authenticated or not isinstance(pending, dict):
        return None
    if pending.get("order_id"):
        if credits.pack_lot(pending["order_id"], current_user.id) is not None:
            session.pop(PENDING_CHECKOUT_KEY, None)
            return "pack_granted"
    elif credits.get_user_credits(current_user.id).unlimited:
        session.pop(PENDING_CHECKOUT_KEY, None)
        return "welcome"
    if time.time() - float(pending.get("at", 0)) > SLOW_CONFIRMATION_SECONDS:
        return "slow"
    return "confirming"


def pending_pack_credits() -> int | None:
    """How many credits the pack being confirmed brings (None when no pack is pending)."""
    pending = session.get(PENDING_CHECKOUT_KEY)
    return pending.get("pack_credits") if isinstance(pending, dict) else None


@bp.app_context_processor
def inject_checkout_confirmation() -> dict:
    return {
        "checkout_confirmation": checkout_confirmation,
        "pricing_plans": plans.plans,
        "yearly_saving": plans.yearly_saving,
        "pending_pack_credits": pending_pack_credits,
        "credit_packs": plans.packs,
    }


@bp.get("/dashboard/subscription/confirmation")
@login_required
def confirmation() -> Response:
    """The payment confirmation fragment the page polls until the webhook made the user Pro."""
    response = make_response(
        render_template(
            "billing/_checkout_confirmation.html",
            polled=True,
            on_feature=request.args.get("on") == "feature",
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/dashboard/subscription/cancel")
@login_required
def cancel() -> Response:
    try:
        canceled = subscriptions.cancel_subscription(current_user.id)
    except DomainError as exc:
        return _refused(exc)
    if canceled.access_ends_at:
        return _changed(
            f"Your subscription is canceled. You keep Pro until {canceled.access_ends_at:%d %B %Y}."
        )
    return _changed("Your subscription is canceled.")


@bp.post("/dashboard/subscription/resume")
@login_required
def resume() -> Response:
    try:
        subscriptions.resume_subscription(current_user.id)
    except DomainError as exc:
        return _refused(exc)
    return _changed("Your subscription is running again.")


@bp.post("/dashboard/subscription/switch")
@login_required
def switch() -> Response:
    """Move the running subscription to the other plan (monthly <-> yearly) at Creem."""
    try:
        switched = subscriptions.switch_plan(current_user.id, request.form.get("plan", ""))
    except DomainError as exc:
        return _refused(exc)
    plan = plans.plan_for_product(switched.product_id)
    return _changed(f"You are on {plan.name if plan else 'the new plan'} now.")


@bp.post("/dashboard/subscription/portal")
@login_required
def portal() -> Response:
    """Open Creem's billing portal (cards, invoices) for the user."""
    try:
        link = subscriptions.customer_portal_url(current_user.id)
    except DomainError as exc:
        return _refused(exc)
    return redirect(link, code=303)


@bp.post(f"{WEBHOOK_PATH_PREFIX}creem")
@csrf.exempt
@limiter.exempt
def creem_webhook() -> Response:
    """Store a signed Creem event and answer at once; an rq job applies it after commit.

    A body over MAX_WEBHOOK_BYTES gets 413 unread; a bad signature gets 401 and nothing is
    stored; an event already stored gets 200 again, and gets a job only while it is
    unprocessed and its job is not queued or running already (one job per event).
    """
    too_large = PayloadTooLarge(
        f"The request body is larger than a webhook event can be ({MAX_WEBHOOK_BYTES // 1024} KB)."
    )
    if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
        raise too_large
    body = request.stream.read(MAX_WEBHOOK_BYTES + 1)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise too_large
    event, created = webhooks.record_webhook(body, request.headers.get(SIGNATURE_HEADER))
    if event.processed_at is None:
        enqueue_event(event.event_id)
    db.session.commit()
    return jsonify({"received": True, "duplicate": not created})
