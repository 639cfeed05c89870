"""Who is asking: session sign-in, personal API tokens, roles, and CSRF for the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, g, redirect, request, url_for
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError

from credit_app.errors import Forbidden, Unauthorized
from credit_app.models import User
from credit_app.platform.extensions import db, login_manager
from credit_app.services import accounts
from credit_app.web import htmx
from credit_app.web.application import sends_bearer_token
from credit_app.web.responses import error_response, wants_json_response

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def init_auth(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a session or remember-me cookie: `<id>.<session version>` (User.get_id).

    One primary-key look-up; a raised session version, a disabled or a deleted account
    signs the session out. (A bare `<id>`, from before versions, counts as version 0.)
    """
    user_id, _, version = session_id.partition(".")
    if not user_id.isdigit() or not (version.isdigit() or version == ""):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.is_deleted or user.is_disabled:
        return None
    return user if user.session_version == int(version or 0) else None


def identify_api_caller() -> None:
    """Who is calling the JSON API, kept for the request as `api_caller()`: the first
    before-request hook of the API blueprints.

    With `Authorization: Bearer <token>` the token decides: its owner (one statement, no ORM
    object: accounts.token_owner), or nobody for a token that is unknown, revoked, or whose
    account is disabled or deleted. Without one, the signed-in session's user. Nobody is
    refused here: the rate limit counts anonymous calls by address first, and each view that
    needs a caller asks `api_caller()`. Tokens authenticate the JSON API only; the pages
    need a signed-in session.
    Raises sqlalchemy.exc.DBAPIError's subclass when the database fails.
    """
    context = g._get_current_object()
    environ = request.environ
    if sends_bearer_token(environ):
        token = environ["HTTP_AUTHORIZATION"][7:].strip()
        context.api_caller = accounts.token_owner(token) if token else None
        context.api_caller_by_token = True
        return
    user = current_user._get_current_object()
    context.api_caller = accounts.Account.of(user) if user.is_authenticated else None
    context.api_caller_by_token = False


def api_caller() -> accounts.Account:
    """The account calling the API (identify_api_caller). Raises Unauthorized when nobody is
    signed in or the token is not valid."""
    caller = g.get("api_caller")
    if caller is None:
        raise Unauthorized()
    return caller


def api_admin() -> accounts.Account:
    """The calling account, if it is an admin with two-factor sign-in set up where that is
    required. Raises Unauthorized, Forbidden."""
    caller = api_caller()
    if not caller.is_admin:
        raise Forbidden("Only admins can do that.")
    if current_app.config["ADMIN_TWO_FACTOR_REQUIRED"] and not caller.has_two_factor:
        raise Forbidden("Set up two-factor sign-in first (Account settings).")
    return caller


@login_manager.unauthorized_handler
def unauthorized():
    if wants_json_response():
        return error_response(Unauthorized.status, Unauthorized.code, Unauthorized.default_message)
    if htmx.is_htmx_request():
        response = error_response(401, "unauthorized", "Your session has ended; sign in again.")
        return htmx.redirect(response, url_for("auth.login", next=request.full_path))
    return redirect(url_for("auth.login", next=request.full_path))


def require_api_csrf() -> None:
    """Cookie-authenticated API writes need a CSRF token or a same-origin fetch; tokens do not.

    Raises CSRFError (mapped to 403).
    """
    context = g._get_current_object()
    if (
        getattr(context, "api_caller_by_token", False)
        or getattr(context, "api_caller", None) is None
    ):
        return
    if request.method not in UNSAFE_METHODS or not current_app.config["WTF_CSRF_ENABLED"]:
        return
    if request.headers.get("Sec-Fetch-Site") == "same-origin":
        return
    try:
        validate_csrf(request.headers.get("X-CSRFToken", ""))
    except ValidationError as exc:
        raise CSRFError(str(exc)) from None


def admin_required(view: Callable) -> Callable:
    """Let only admins through; others get 403. Where admin two-factor is required, an admin
    session without it (one from before the requirement) is sent to set it up first.

    Raises Forbidden.
    """

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any):
        if not current_user.is_admin:
            raise Forbidden("Only admins can do that.")
        if current_app.config["ADMIN_TWO_FACTOR_REQUIRED"] and not current_user.has_two_factor:
            if wants_json_response():
                raise Forbidden("Set up two-factor sign-in first (Account settings).")
            return redirect(url_for("auth.two_factor_setup", next=request.full_path))
        return view(*args, **kwargs)

    return wrapped


def register_csrf_error_handler(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def handle_csrf_error(exc: CSRFError):
        return error_response(
            403, "csrf_failed", "The form expired or the CSRF token is missing. Reload and retry."
        )
