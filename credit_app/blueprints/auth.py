"""Sign-up, sign-in, sign-out, and the personal API tokens page."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from credit_app.errors import DomainError
from credit_app.extensions import db, limiter
from credit_app.forms import ApiTokenForm, DeleteAccountForm, LoginForm, SignupForm
from credit_app.services import accounts, privacy

bp = Blueprint("auth", __name__)
auth_limit = limiter.limit(lambda: current_app.config["RATELIMIT_AUTH"], methods=["POST"])


def safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the dashboard."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") \
                and not target.startswith("//"):
            return target
    return url_for("dashboard.home")


@bp.route("/signup", methods=["GET", "POST"])
@auth_limit
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    form = SignupForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.register_user(
                form.email.data, form.password.data,
                welcome_credits=current_app.config["SIGNUP_CREDITS"],
                min_password_length=current_app.config["MIN_PASSWORD_LENGTH"],
            )
        except DomainError as exc:
            db.session.rollback()
            field = getattr(form, exc.details.get("field", ""), None) or form.email
            field.errors = [*field.errors, exc.message]
            status = exc.status
        else:
            db.session.commit()
            login_user(user)
            flash(f"Welcome! You have {user.credits_remaining} free credits to try every "
                  "feature.", "success")
            return redirect(url_for("dashboard.home"))
    elif form.is_submitted():
        status = 422
    return render_template("auth/signup.html", form=form,
                           min_length=current_app.config["MIN_PASSWORD_LENGTH"]), status


@bp.route("/login", methods=["GET", "POST"])
@auth_limit
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user, remember=form.remember.data)
            return redirect(safe_next(request.args.get("next")))
        form.password.errors = ["That email and password do not match an account."]
        status = 401
    elif form.is_submitted():
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/settings/api-tokens", methods=["GET", "POST"])
@login_required
def api_tokens():
    form = ApiTokenForm()
    new_token = None
    status = 200
    if form.validate_on_submit():
        _, new_token = accounts.create_api_token(current_user.id, form.name.data)
        db.session.commit()
        form = ApiTokenForm(formdata=None)
    elif form.is_submitted():
        status = 422
    return render_template("auth/api_tokens.html", form=form, new_token=new_token,
                           tokens=accounts.list_api_tokens(current_user.id)), status


@bp.post("/settings/api-tokens/<int:token_id>/revoke")
@login_required
def revoke_api_token(token_id: int):
    if accounts.revoke_api_token(current_user.id, token_id):
        db.session.commit()
        flash("The token was revoked; scripts using it will now get 401.", "success")
    else:
        flash("No such active token.", "error")
    return redirect(url_for("auth.api_tokens"))


@bp.route("/settings/account", methods=["GET", "POST"])
@login_required
def account():
    """The account page; its form deletes the account after the password is confirmed."""
    form = DeleteAccountForm()
    status = 200
    if form.validate_on_submit():
        try:
            folders = privacy.delete_account(current_user.id, form.password.data,
                                             current_app.config["GENERATION_STORAGE_PATH"])
        except DomainError as exc:
            db.session.rollback()
            form.password.errors = [*form.password.errors, exc.message]
            status = exc.status
        else:
            db.session.commit()
            privacy.remove_files(folders)
            logout_user()
            flash("Your account and your designs are deleted. Thank you for trying Roomcraft.",
                  "info")
            return redirect(url_for("auth.login"))
    elif form.is_submitted():
        status = 422
    return render_template("auth/account.html", form=form), status
