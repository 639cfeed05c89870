"""Domain errors and the one place that turns any error into HTML, JSON or an htmx fragment."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify, render_template, request, url_for
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from credit_app.platform.extensions import db

log = logging.getLogger(__name__)

# What a database or Redis outage looks like from here: the server refuses or drops the
# connection, or answers "too many clients" (OperationalError, InterfaceError), or every
# pooled connection is busy past the pool timeout (TimeoutError), or Redis does not answer
# within its socket timeout (RedisError). Each is answered 503 with Retry-After.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, redis.RedisError,
)
# A full traceback once per incident (per kind of outage and this long), one line otherwise.
OUTAGE_TRACEBACK_INTERVAL_SECONDS = 60.0


class DomainError(Exception):
    """Base of every error a service raises on purpose; carries its HTTP status and code."""

    status = 400
    code = "bad_request"
    default_message = "The request could not be processed."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details


class ValidationFailed(DomainError):
    status = 422
    code = "validation_error"
    default_message = "The request is not valid."


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"
    default_message = "The amount must be a whole number between 1 and 100000."


class UnknownFeature(ValidationFailed):
    code = "unknown_feature"
    default_message = "That feature does not exist."


class InsufficientCredits(DomainError):
    status = 402
    code = "insufficient_credits"
    default_message = "You have used all your credits. Upgrade to Pro for unlimited generations."


class UserNotFound(DomainError):
    status = 404
    code = "user_not_found"
    default_message = "No such user."


class ReservationNotFound(DomainError):
    status = 404
    code = "reservation_not_found"
    default_message = "No such reservation."


class ReservationNotPending(DomainError):
    status = 409
    code = "reservation_not_pending"
    default_message = "The reservation has already been resolved."


class ReservationExpired(ReservationNotPending):
    code = "reservation_expired"
    default_message = "The reservation timed out and its credit was returned."


class IdempotencyConflict(DomainError):
    status = 409
    code = "idempotency_conflict"
    default_message = "That generation id was already used for a different request."


class EmailTaken(DomainError):
    status = 409
    code = "email_taken"
    default_message = "An account with that email already exists."


class WeakPassword(ValidationFailed):
    code = "weak_password"


class DisposableEmail(ValidationFailed):
    code = "disposable_email"
    default_message = ("Addresses from throwaway email services cannot sign up; use an address "
                       "you will keep.")


class EmailNotVerified(DomainError):
    status = 403
    code = "email_not_verified"
    default_message = ("Confirm your email address first: open the link we sent you, then "
                       "generate.")


class InvalidToken(DomainError):
    status = 400
    code = "invalid_token"
    default_message = "That link is invalid or has expired. Ask for a new one."


class WrongPassword(ValidationFailed):
    code = "wrong_password"
    default_message = "That password is not right."


class InvalidTwoFactorCode(ValidationFailed):
    code = "invalid_two_factor_code"
    default_message = ("That code is not right. Enter the 6 digits your app shows now, or a "
                       "recovery code.")


class MailDeliveryError(DomainError):
    """The SMTP server refused or could not be reached (the mail job retries)."""

    status = 503
    code = "mail_unavailable"
    default_message = "Email could not be sent just now."


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    default_message = "You are not allowed to do that."


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    default_message = "Sign in or send a valid API token."


class UnknownPlan(ValidationFailed):
    code = "unknown_plan"
    default_message = "That plan does not exist."


class UnknownPack(ValidationFailed):
    code = "unknown_pack"
    default_message = "That credit pack does not exist."


class PackNotGranted(DomainError):
    status = 404
    code = "pack_not_granted"
    default_message = "No credit pack was granted for that order."


class AlreadySubscribed(DomainError):
    status = 409
    code = "already_subscribed"
    default_message = "You already have Pro."


class NoSubscription(DomainError):
    status = 404
    code = "no_subscription"
    default_message = "You have no subscription to change."


class SubscriptionActionNotAllowed(DomainError):
    status = 409
    code = "subscription_action_not_allowed"
    default_message = "That cannot be done with your subscription as it is now."


class InvalidWebhookSignature(DomainError):
    status = 401
    code = "invalid_signature"
    default_message = "The webhook signature is missing or does not match."


class InvalidWebhookPayload(ValidationFailed):
    code = "invalid_webhook_payload"
    default_message = "The webhook body is not a Creem event."


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is larger than a webhook event can be (256 KB)."


class WebhookEventNotFound(DomainError):
    status = 404
    code = "webhook_event_not_found"
    default_message = "No such webhook event."


class WebhookEventUnresolved(DomainError):
    """A stored event that cannot be applied yet (e.g. no user is known for it); retried."""

    status = 409
    code = "webhook_event_unresolved"
    default_message = "The webhook event cannot be applied."


class CreemError(DomainError):
    """Creem refused a call or could not be reached; `creem_status` is its HTTP status."""

    status = 502
    code = "payment_provider_error"
    default_message = "The payment provider could not be reached. Please try again shortly."

    def __init__(self, message: str | None = None, creem_status: int | None = None,
                 **details: Any) -> None:
        super().__init__(message, **details)
        self.creem_status = creem_status


class RateLimited(DomainError):
    """A rate limit is spent; `retry_after` says in how many seconds it resets."""

    status = 429
    code = "too_many_requests"
    default_message = "Too many requests. Please slow down."

    def __init__(self, message: str | None = None, retry_after: int = 60,
                 **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """The database or Redis cannot serve the request now; the client should retry shortly."""

    status = 503
    code = "service_unavailable"
    default_message = "We are briefly overloaded or down for a moment. Please retry shortly."

    def __init__(self, message: str | None = None, retry_after: int = 2, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


WEBHOOK_PATH_PREFIX = "/billing/webhooks/"


def is_htmx_request() -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_json_response() -> bool:
    """API and webhook paths and clients that prefer JSON get JSON; browsers and htmx HTML."""
    if request.path.startswith(("/api/", WEBHOOK_PATH_PREFIX)):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and (
        request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_body(code: str, message: str, **details: Any) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error.update(details)
    return {"error": error}


def error_response(status: int, code: str, message: str, **details: Any) -> Response:
    """Render an error for whoever asked: JSON, an htmx fragment, or a full page.

    A server-side error (5xx) gets the standalone page, which reads neither the signed-in user
    nor their credits, so it renders while the database is down.
    """
    if wants_json_response():
        response = jsonify(error_body(code, message, **details))
    elif is_htmx_request():
        response = Response(render_template("errors/_error.html", status=status,
                                            code=code, message=message))
        response.headers["HX-Retarget"] = "#flash-area"
        response.headers["HX-Reswap"] = "innerHTML"
    elif status >= 500:
        response = Response(_standalone_page(status, message))
    else:
        response = Response(render_template("errors/error.html", status=status, code=code,
                                            message=message))
    response.status_code = status
    response.headers["Vary"] = "HX-Request, Accept"
    return response


UPLOAD_TOO_LARGE_MESSAGE = ("That file is too large to upload: photos can be up to 10 MB. "
                            "Choose a smaller one.")


def upload_too_large_response() -> Response:
    """A generation form's upload was over the request limit: the message goes under the
    photo field (#image-error), not to the top of the page; nothing was read or spent."""
    response = Response(render_template("errors/_field_error.html", field="image",
                                        message=UPLOAD_TOO_LARGE_MESSAGE), status=413)
    response.headers["HX-Retarget"] = "#image-error"
    response.headers["HX-Reswap"] = "outerHTML"
    response.headers["Vary"] = "HX-Request, Accept"
    return response


def _standalone_page(status: int, message: str) -> str:
    """The 5xx page, rendered without context processors: they would load the signed-in user
    (flask-login's `current_user`), which needs the database that may be what failed."""
    template = current_app.jinja_env.get_template("errors/unavailable.html")
    return template.render(status=status, message=message, url_for=url_for, request=request)


class _IncidentLog:
    """Logs an outage's traceback once per incident and a single line for each request after
    it, so a minute of downtime costs a few lines of log, not a traceback per request."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def report(self, exc: Exception) -> None:
        kind = type(exc).__name__
        now = time.monotonic()
        with self._lock:
            first = now - self._last.get(kind, float("-inf")) >= self.interval
            if first:
                self._last[kind] = now
        if first:
            log.error("outage on %s %s (%s); answering 503 (traceback once per %.0f s)",
                      request.method, request.path, kind, self.interval, exc_info=exc)
        else:
            log.warning("outage on %s %s: %s: %s", request.method, request.path, kind,
                        str(exc).splitlines()[0] if str(exc) else "")


outage_log = _IncidentLog(OUTAGE_TRACEBACK_INTERVAL_SECONDS)


def _rollback_quietly() -> None:
    """Roll the session back; on a connection that is already gone that can fail too."""
    try:
        db.session.rollback()
    except Exception:
        db.session.close()


def unavailable_response(exc: Exception) -> Response:
    """503 with Retry-After for an outage error (OUTAGE_ERRORS or ServiceUnavailable)."""
    retry_after = exc.retry_after if isinstance(exc, ServiceUnavailable) else (
        1 if isinstance(exc, sa_exc.TimeoutError) else 2)
    message = exc.message if isinstance(exc, ServiceUnavailable) else (
        ServiceUnavailable.default_message)
    response = error_response(503, ServiceUnavailable.code, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_")


def _retry_after_of_rate_limit(exc: HTTPException) -> int:
    """Seconds until a breached limit lets the caller in again: the limiter's own header when
    it wrote one, else the length of the limit's window (the longest the wait can be)."""
    original = exc.get_response().headers.get("Retry-After")
    if original and original.isdigit():
        return max(1, int(original))
    limit = getattr(getattr(exc, "limit", None), "limit", None)
    return max(1, int(limit.get_expiry())) if limit is not None else 60


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def handle_domain_error(exc: DomainError) -> Response:
        _rollback_quietly()
        if isinstance(exc, ServiceUnavailable):
            return unavailable_response(exc)
        details = dict(exc.details)
        if isinstance(exc, InsufficientCredits):
            details["upgrade_url"] = url_for("billing.subscription",
                                             feature=details.pop("feature", None))
        response = error_response(exc.status, exc.code, exc.message, **details)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        if exc.code and exc.code >= 500:
            _rollback_quietly()
        message = exc.description or exc.name
        if exc.code == 413 and is_htmx_request() and (request.endpoint or "").startswith(
                "dashboard.start_"):
            return upload_too_large_response()
        if exc.code == 413 and not wants_json_response():
            message = UPLOAD_TOO_LARGE_MESSAGE
        response = error_response(exc.code or 500, _http_code(exc), message)
        if exc.code == 429:
            response.headers["Retry-After"] = str(_retry_after_of_rate_limit(exc))
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        _rollback_quietly()
        if isinstance(exc, OUTAGE_ERRORS):
            outage_log.report(exc)
            return unavailable_response(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error",
                              "Something went wrong on our side. Please try again.")
