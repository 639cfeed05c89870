"""Plans and the user's subscription status: where the upgrade prompts lead."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from credit_app.features import FEATURES

bp = Blueprint("billing", __name__)


@bp.get("/dashboard/subscription")
@login_required
def subscription():
    feature = FEATURES.get(request.args.get("feature", ""))
    return render_template("billing/subscription.html", from_feature=feature)
