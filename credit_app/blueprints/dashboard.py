"""The signed-in home: balance, recent credit history, and the sidebar credit fragment."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from credit_app.features import FEATURES
from credit_app.services import credits

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    return render_template("landing.html", features=FEATURES.values())


@bp.get("/dashboard")
@login_required
def home():
    page = credits.get_credit_history(current_user.id, request.args.get("cursor"), limit=20)
    return render_template("dashboard/home.html", history=page, features=FEATURES.values())


@bp.get("/dashboard/credits")
@login_required
def sidebar_credits():
    """The credit counter: the same fragment for first paint, polling and swaps."""
    response = make_response(render_template("dashboard/_sidebar_credits.html"))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "HX-Request"
    return response
