"""Domain errors and the one place that turns any error into HTML, JSON or an htmx fragment."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from credit_app.extensions import db

log = logging.getLogger(__name__)


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
    """Render an error for whoever asked: JSON, an htmx fragment, or a full page."""
    if wants_json_response():
        response = jsonify(error_body(code, message, **details))
    elif is_htmx_request():
        response = Response(render_template("errors/_error.html", status=status,
                                            code=code, message=message))
        response.headers["HX-Retarget"] = "#flash-area"
        response.headers["HX-Reswap"] = "innerHTML"
    else:
        response = Response(render_template("errors/error.html", status=status, code=code,
                                            message=message))
    response.status_code = status
    response.headers["Vary"] = "HX-Request, Accept"
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def handle_domain_error(exc: DomainError) -> Response:
        db.session.rollback()
        details = dict(exc.details)
        if isinstance(exc, InsufficientCredits):
            details["upgrade_url"] = url_for("billing.subscription",
                                             feature=details.pop("feature", None))
        return error_response(exc.status, exc.code, exc.message, **details)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        if exc.code and exc.code >= 500:
            db.session.rollback()
        message = exc.description or exc.name
        response = error_response(exc.code or 500, _http_code(exc), message)
        if exc.code == 429:
            retry_after = getattr(exc, "retry_after", None)
            original = exc.get_response()
            response.headers["Retry-After"] = original.headers.get("Retry-After",
                                                                    str(retry_after or 60))
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error",
                              "Something went wrong on our side. Please try again.")
