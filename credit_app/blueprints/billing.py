"""Plans and the user's subscription status: where the upgrade prompts lead."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from credit_app.extensions import db
from credit_app.features import FEATURES
from credit_app.services import analytics

bp = Blueprint("billing", __name__)


@bp.get("/dashboard/subscription")
@login_required
def subscription():
    feature = FEATURES.get(request.args.get("feature", ""))
    if request.args.get("source") == "upgrade_modal":
        analytics.track("upgrade_clicked", current_user.id,
                        feature=feature.key if feature else None)
        db.session.commit()
    return render_template("billing/subscription.html", from_feature=feature)
