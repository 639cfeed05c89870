"""The credit check of spec task 1.2.3, as a view decorator for views that start a generation."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import make_response, render_template, request
from flask_login import current_user, login_required

from credit_app.errors import EmailNotVerified, InsufficientCredits
from credit_app.platform import metrics
from credit_app.platform.extensions import db
from credit_app.services import analytics, credits, fair_use, generations
from credit_app.web import htmx
from credit_app.web.credit_metrics import credit_operation
from credit_app.web.request_json import request_json
from credit_app.web.responses import wants_json_response

# Where a page's dialogs go (templates/base.html).
MODAL_SLOT = "#modal-root"


def request_generation_id() -> str:
    """The client's generation id (a form's hidden field or JSON), else a fresh one."""
    body = request_json()
    supplied = request.form.get("generation_id") or (
        body.get("generation_id") if isinstance(body, dict) else None
    )
    return supplied if isinstance(supplied, str) and supplied else generations.new_generation_id()


def credit_required(feature: str) -> Callable[[Callable], Callable]:
    """Reserve the credit for `feature` before the view runs and pass it as `reservation`.

    The view owns the outcome: it commits the request (the hold stands) and later a job
    commits or releases the reservation. Without credits, htmx requests get the upgrade
    modal, JSON requests a 402 and pages the error page with the upgrade link.

    An address not verified yet stops here, before any credit is held (a column of the user
    already loaded, so no query): htmx gets the dialog that offers to resend the link, others
    EmailNotVerified (403). A Pro user past the day's fair-use mark gets a longer hold (a Pro
    hold costs nothing), so a generation waiting on the fair-use queue is not timed out.

    The metrics count the request as a "reserve" credit operation (the upgrade modal as one
    refused for insufficient credits).
    """
    credits.get_feature(feature)

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any):
            if not current_user.is_verified:
                if htmx.is_htmx_request() and not wants_json_response():
                    return verification_required_response()
                raise EmailNotVerified()
            timeout = fair_use.hold_timeout(current_user.id, current_user.is_pro)
            try:
                reservation = credits.reserve_credit(
                    current_user.id, feature, request_generation_id(), timeout=timeout
                )
            except InsufficientCredits:
                db.session.rollback()
                if htmx.is_htmx_request() and not wants_json_response():
                    metrics.mark_credit_operation("reserve", outcome="insufficient_credits")
                    return upgrade_modal_response(feature)
                raise
            return view(*args, reservation=reservation, **kwargs)

        return credit_operation("reserve")(wrapped)

    return decorator


def upgrade_modal_response(feature: str | None):
    """The upgrade modal as an htmx fragment, swapped into the page's modal slot (recorded)."""
    analytics.track(
        "upgrade_modal_shown",
        current_user.id,
        feature=feature,
        credits_remaining=credits.get_user_credits(current_user.id).remaining,
    )
    db.session.commit()
    response = make_response(render_template("dashboard/_upgrade_modal.html", feature=feature))
    return htmx.vary_on_htmx(htmx.retarget(response, MODAL_SLOT, "innerHTML"))


def verification_required_response():
    """The "confirm your email first" dialog as an htmx fragment, in the page's modal slot."""
    response = make_response(render_template("dashboard/_verify_modal.html"), 403)
    return htmx.vary_on_htmx(htmx.retarget(response, MODAL_SLOT, "innerHTML"))
