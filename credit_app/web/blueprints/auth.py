"""Sign-up, sign-in (with admin two-factor), sign-out, password reset, email verification,
account settings, and the personal API tokens page."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from credit_app.errors import DomainError
from credit_app.models import User
from credit_app.platform.extensions import db, limiter
from credit_app.platform.storage import get_storage
from credit_app.services import accounts, notifications, privacy
from credit_app.services import two_factor as totp
from credit_app.services.limits import MAX_EMAIL_LENGTH
from credit_app.web import htmx
from credit_app.web.forms import (
    ApiTokenForm,
    ChangeEmailForm,
    ChangePasswordForm,
    DeleteAccountForm,
    ForgotPasswordForm,
    LoginForm,
    NotificationsForm,
    ResetPasswordForm,
    SignOutEverywhereForm,
    SignupForm,
    TwoFactorForm,
)

bp = Blueprint("auth", __name__)
auth_limit = limiter.limit(lambda: current_app.config["RATELIMIT_AUTH"], methods=["POST"])
PENDING_TWO_FACTOR = "two_factor_pending"
PENDING_TWO_FACTOR_SECONDS = 300


def client_address() -> str:
    return f"ip:{request.remote_addr or 'unknown'}"


def reset_address() -> str:
    """The address a reset is asked for, folded like sign-up's (so a.b@ and ab@ share)."""
    from credit_app.services.mailboxes import mailbox_identity

    return f"reset:{mailbox_identity(request.form.get('email', ''))[:MAX_EMAIL_LENGTH]}"


# Sign-ups that created an account count against the client's address.
signup_limit = limiter.limit(
    lambda: current_app.config["RATELIMIT_SIGNUP"],
    methods=["POST"],
    key_func=client_address,
    scope="signup",
    deduct_when=lambda response: response.status_code < 400,
)
reset_client_limit = limiter.limit(
    lambda: current_app.config["RATELIMIT_RESET_CLIENT"],
    methods=["POST"],
    key_func=client_address,
    scope="reset-client",
)
reset_address_limit = limiter.limit(
    lambda: current_app.config["RATELIMIT_RESET_ADDRESS"],
    methods=["POST"],
    key_func=reset_address,
    scope="reset-address",
)
resend_limit = limiter.limit(
    lambda: current_app.config["RATELIMIT_VERIFY_RESEND"], methods=["POST"]
)


def safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the dashboard."""
    if target:
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and target.startswith("/")
            and not target.startswith("//")
        ):
            return target
    return url_for("dashboard.home")


def _field_error(form, exc: DomainError, default: str) -> None:
    field = getattr(form, exc.details.get("field", ""), None) or getattr(form, default)
    field.errors = [*field.errors, exc.message]


@bp.route("/signup", methods=["GET", "POST"])
@auth_limit
@signup_limit
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    form = SignupForm()
    status = 200
    valid = form.validate_on_submit()
    problems = (
        accounts.signup_problems(
            form.email.data or "",
            form.password.data or "",
            current_app.config["MIN_PASSWORD_LENGTH"],
        )
        if form.is_submitted()
        else []
    )
    # Everything wrong with the details at once, not one problem per round trip.
    for problem in problems:
        _field_error(form, problem, "email")
    if valid and problems:
        status = problems[0].status
    elif valid:
        try:
            user = accounts.register_user(
                form.email.data,
                form.password.data,
                welcome_credits=current_app.config["SIGNUP_CREDITS"],
                min_password_length=current_app.config["MIN_PASSWORD_LENGTH"],
            )
            accounts.send_verification(user)
        except DomainError as exc:
            db.session.rollback()
            _field_error(form, exc, "email")
            status = exc.status
        else:
            db.session.commit()
            login_user(user)
            if user.credits_remaining:
                flash(
                    f"Welcome! You have {user.credits_remaining} free credits to try every "
                    f"feature. We sent a link to {user.email}: open it to start generating.",
                    "success",
                )
            else:
                flash(
                    "Welcome! This mailbox already had its free credits on another "
                    f"account, so this one starts at 0. We sent a link to {user.email}.",
                    "info",
                )
            return redirect(url_for("dashboard.home"))
    elif form.is_submitted():
        status = 422
    return _new_password_page("auth/signup.html", form, status)


def _new_password_page(template: str, form: SignupForm | ResetPasswordForm, status: int):
    """A page whose form sets a new password; it states the minimum length."""
    return render_template(
        template, form=form, min_length=current_app.config["MIN_PASSWORD_LENGTH"]
    ), status


def _finish_sign_in(user: User, remember: bool, method: str):
    """Sign the user in (admin sign-ins are audited) and go where they were heading."""
    session.pop(PENDING_TWO_FACTOR, None)
    if user.is_admin:
        accounts.record_admin_sign_in(user, method, request.remote_addr)
    db.session.commit()
    login_user(user, remember=remember)
    return redirect(safe_next(request.args.get("next")))


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
            needs_code = user.is_admin and (
                user.has_two_factor or current_app.config["ADMIN_TWO_FACTOR_REQUIRED"]
            )
            if not needs_code:
                return _finish_sign_in(user, form.remember.data, "password")
            db.session.commit()
            session[PENDING_TWO_FACTOR] = {
                "id": user.get_id(),
                "remember": form.remember.data,
                "at": time.time(),
            }
            endpoint = "auth.two_factor" if user.has_two_factor else "auth.two_factor_setup"
            return redirect(url_for(endpoint, next=request.args.get("next")))
        accounts.record_failed_sign_in(form.email.data, "password", request.remote_addr)
        db.session.commit()
        form.password.errors = ["That email and password do not match an account."]
        status = 401
    elif form.is_submitted():
        status = 422
    return render_template("auth/login.html", form=form), status


def _pending_user() -> User | None:
    """The admin who gave the right password and still owes a code (for 5 minutes)."""
    from credit_app.web.auth import load_user

    pending = session.get(PENDING_TWO_FACTOR)
    if (
        not isinstance(pending, dict)
        or time.time() - pending.get("at", 0) > PENDING_TWO_FACTOR_SECONDS
    ):
        session.pop(PENDING_TWO_FACTOR, None)
        return None
    return load_user(str(pending.get("id", "")))


@bp.route("/login/two-factor", methods=["GET", "POST"])
@auth_limit
def two_factor():
    user = _pending_user()
    if user is None:
        flash("Sign in again: the sign-in expired.", "info")
        return redirect(url_for("auth.login", next=request.args.get("next")))
    if not user.has_two_factor:
        return redirect(url_for("auth.two_factor_setup", next=request.args.get("next")))
    form = TwoFactorForm()
    status = 200
    if form.validate_on_submit():
        try:
            method = totp.verify(user, form.code.data)
        except DomainError as exc:
            db.session.rollback()
            accounts.record_failed_sign_in(user.email, "two_factor_code", request.remote_addr)
            db.session.commit()
            form.code.errors = [exc.message]
            status = 401
        else:
            if method == "recovery":
                flash(
                    f"You used a recovery code; {totp.recovery_codes_left(user)} are "
                    "left. Make new ones in Account settings if you run low.",
                    "info",
                )
            return _finish_sign_in(user, session[PENDING_TWO_FACTOR].get("remember", False), method)
    elif form.is_submitted():
        status = 422
    return render_template("auth/two_factor.html", form=form), status


@bp.route("/login/two-factor/setup", methods=["GET", "POST"])
@auth_limit
def two_factor_setup():
    """Set up TOTP: during an admin sign-in that requires it, or from the account settings."""
    signed_in = current_user.is_authenticated
    user = current_user if signed_in else _pending_user()
    if user is None or not user.is_admin:
        return redirect(url_for("auth.login"))
    if user.has_two_factor:
        if signed_in:
            flash("Two-factor sign-in is already on for your account.", "info")
            return redirect(url_for("auth.account"))
        return redirect(url_for("auth.two_factor", next=request.args.get("next")))
    form = TwoFactorForm()
    status = 200
    if form.validate_on_submit():
        try:
            codes = totp.enable(user, form.code.data)
        except DomainError as exc:
            db.session.rollback()
            form.code.errors = [exc.message]
            status = exc.status
        else:
            accounts.record_two_factor_enabled(user)
            if not signed_in:
                remember = session[PENDING_TWO_FACTOR].get("remember", False)
                session.pop(PENDING_TWO_FACTOR, None)
                accounts.record_admin_sign_in(user, "totp", request.remote_addr)
                login_user(user, remember=remember)
            db.session.commit()
            return render_template(
                "auth/recovery_codes.html", codes=codes, next=safe_next(request.args.get("next"))
            )
    elif form.is_submitted():
        status = 422
    secret = totp.ensure_secret(user)
    qr_code = totp.qr_code_data_uri(user)
    db.session.commit()
    return render_template(
        "auth/two_factor_setup.html", form=form, secret=secret, qr_code=qr_code, signed_in=signed_in
    ), status


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


# Password reset


@bp.route("/forgot-password", methods=["GET", "POST"])
@reset_client_limit
@reset_address_limit
def forgot_password():
    """Mail a reset link; the answer is the same whether or not the address has an account."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        accounts.request_password_reset(form.email.data)
        db.session.commit()
        return render_template("auth/forgot_password_sent.html", email=form.email.data)
    status = 422 if form.is_submitted() else 200
    return render_template("auth/forgot_password.html", form=form), status


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@auth_limit
def reset_password(token: str):
    from credit_app.services import account_tokens

    try:
        account_tokens.user_for_reset_token(token)
    except DomainError as exc:
        return render_template("auth/reset_password_invalid.html", message=exc.message), 400
    form = ResetPasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            accounts.reset_password(
                token, form.password.data, current_app.config["MIN_PASSWORD_LENGTH"]
            )
        except DomainError as exc:
            db.session.rollback()
            _field_error(form, exc, "password")
            status = exc.status
        else:
            db.session.commit()
            logout_user()
            flash(
                "Your password is changed and every session of your account has ended. "
                "Sign in with the new password.",
                "success",
            )
            return redirect(url_for("auth.login"))
    elif form.is_submitted():
        status = 422
    return _new_password_page("auth/reset_password.html", form, status)


# Email verification


@bp.get("/verify-email/<token>")
def verify_email(token: str):
    try:
        user, outcome = accounts.verify_email(token)
    except DomainError as exc:
        db.session.rollback()
        return render_template("auth/verify_invalid.html", message=exc.message), exc.status
    db.session.commit()
    if outcome == "changed":
        flash(f"Your email address is now {user.email}.", "success")
    else:
        flash("Your email address is confirmed. You can generate now.", "success")
    target = "auth.account" if outcome == "changed" else "dashboard.home"
    if current_user.is_authenticated and current_user.id == user.id:
        return redirect(url_for(target))
    return redirect(url_for("auth.login", next=url_for(target)))


@bp.post("/verify-email/resend")
@login_required
@resend_limit
def resend_verification():
    accounts.send_verification(current_user)
    db.session.commit()
    message = f"We sent a new link to {current_user.email}. Open it, then generate."
    if htmx.is_htmx_request():
        return render_template("auth/_verification_sent.html", message=message)
    flash(message, "success")
    return redirect(safe_next(request.form.get("next")))


# Account settings


def _account_forms(**forms) -> dict:
    user = current_user
    defaults = {
        "password_form": ChangePasswordForm(formdata=None, prefix="pw"),
        "email_form": ChangeEmailForm(formdata=None, prefix="em"),
        "notifications_form": NotificationsForm(
            formdata=None,
            prefix="nt",
            data={kind: notifications.wants(user, kind) for kind in notifications.OPTIONAL_KINDS},
        ),
        "everywhere_form": SignOutEverywhereForm(formdata=None, prefix="so"),
        "form": DeleteAccountForm(formdata=None),
    }
    return {**defaults, **forms}


def _render_account(status: int = 200, **forms):
    return render_template("auth/account.html", **_account_forms(**forms)), status


@bp.route("/settings/account", methods=["GET", "POST"])
@login_required
def account():
    """The account page; its form at the bottom deletes the account (password confirmed)."""
    if request.method == "GET":
        return _render_account()
    form = DeleteAccountForm()
    status = 422
    if form.validate_on_submit():
        try:
            folders = privacy.delete_account(current_user.id, form.password.data)
        except DomainError as exc:
            db.session.rollback()
            form.password.errors = [*form.password.errors, exc.message]
            status = exc.status
        else:
            db.session.commit()
            privacy.remove_files(get_storage(), folders)
            logout_user()
            flash(
                "Your account and your designs are deleted. Thank you for trying Roomcraft.", "info"
            )
            return redirect(url_for("auth.login"))
    return _render_account(status, form=form)


@bp.post("/settings/password")
@login_required
@auth_limit
def change_password():
    form = ChangePasswordForm(prefix="pw")
    if not form.validate_on_submit():
        return _render_account(422, password_form=form)
    try:
        accounts.change_password(
            current_user,
            form.current_password.data,
            form.password.data,
            current_app.config["MIN_PASSWORD_LENGTH"],
        )
    except DomainError as exc:
        db.session.rollback()
        _field_error(form, exc, "password")
        return _render_account(exc.status, password_form=form)
    db.session.commit()
    login_user(current_user._get_current_object())
    flash("Your password is changed. Every other session of your account has ended.", "success")
    return redirect(url_for("auth.account"))


@bp.post("/settings/email")
@login_required
@auth_limit
def change_email():
    form = ChangeEmailForm(prefix="em")
    if not form.validate_on_submit():
        return _render_account(422, email_form=form)
    try:
        address = accounts.request_email_change(
            current_user, form.new_email.data, form.password.data
        )
    except DomainError as exc:
        db.session.rollback()
        _field_error(form, exc, "new_email")
        return _render_account(exc.status, email_form=form)
    db.session.commit()
    flash(
        f"We sent a link to {address}. Your address changes when you open it; until then "
        f"it stays {current_user.email}.",
        "success",
    )
    return redirect(url_for("auth.account"))


@bp.post("/settings/notifications")
@login_required
def notification_settings():
    form = NotificationsForm(prefix="nt")
    if not form.validate_on_submit():
        return _render_account(422, notifications_form=form)
    notifications.set_opt_outs(
        current_user,
        [kind for kind in notifications.OPTIONAL_KINDS if not getattr(form, kind).data],
    )
    db.session.commit()
    flash("Your email choices are saved.", "success")
    return redirect(url_for("auth.account", _anchor="notifications"))


@bp.post("/settings/sign-out-everywhere")
@login_required
def sign_out_everywhere():
    form = SignOutEverywhereForm(prefix="so")
    if not form.validate_on_submit():
        return _render_account(422, everywhere_form=form)
    accounts.end_all_sessions(current_user)
    db.session.commit()
    logout_user()
    flash("You are signed out on every device, this one too.", "info")
    return redirect(url_for("auth.login"))


# API tokens


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
    return render_template(
        "auth/api_tokens.html",
        form=form,
        new_token=new_token,
        tokens=accounts.list_api_tokens(current_user.id),
    ), status


@bp.post("/settings/api-tokens/<int:token_id>/revoke")
@login_required
def revoke_api_token(token_id: int):
    if accounts.revoke_api_token(current_user.id, token_id):
        db.session.commit()
        flash("The token was revoked; scripts using it will now get 401.", "success")
    else:
        flash("No such active token.", "error")
    return redirect(url_for("auth.api_tokens"))
