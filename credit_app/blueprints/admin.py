"""Staff area: find a user, see their ledger, grant credits."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from credit_app.auth import admin_required
from credit_app.errors import DomainError
from credit_app.extensions import db
from credit_app.forms import GrantForm
from credit_app.models import User
from credit_app.services import credits

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@admin_required
def users():
    search = request.args.get("q", "").strip()
    query = select(User).order_by(User.id.desc()).limit(50)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(User.email).like(f"%{escaped}%", escape="\\"))
    return render_template("admin/users.html", users=db.session.execute(query).scalars().all(),
                           search=search)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@admin_required
def user_detail(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    form = GrantForm()
    status = 200
    if form.validate_on_submit():
        try:
            credits.grant_credits(user.id, form.amount.data, form.reason.data,
                                  actor_id=current_user.id)
        except DomainError as exc:
            db.session.rollback()
            form.amount.errors = [exc.message]
            status = exc.status
        else:
            db.session.commit()
            flash(f"Granted {form.amount.data} credits to {user.email}.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    elif form.is_submitted():
        status = 422
    history = credits.get_credit_history(user.id, request.args.get("cursor"), limit=50)
    return render_template("admin/user_detail.html", user=user, form=form,
                           history=history), status
