"""The exception classes of credit_app, the lowest layer: every module may raise them.

A DomainError carries its HTTP status, a stable code and a message safe to show; the web layer
(credit_app/web/responses.py) turns any of them into JSON, an htmx fragment or a page. This
module imports nothing of the app and no framework.
"""

from __future__ import annotations

from typing import Any


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
    default_message = "The amount is not a whole number in the allowed range."


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
    default_message = (
        "Addresses from throwaway email services cannot sign up; use an address you will keep."
    )


class EmailNotVerified(DomainError):
    status = 403
    code = "email_not_verified"
    default_message = "Confirm your email address first: open the link we sent you, then generate."


class InvalidToken(DomainError):
    status = 400
    code = "invalid_token"
    default_message = "That link is invalid or has expired. Ask for a new one."


class WrongPassword(ValidationFailed):
    code = "wrong_password"
    default_message = "That password is not right."


class InvalidTwoFactorCode(ValidationFailed):
    code = "invalid_two_factor_code"
    default_message = "That code is not right."


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
    default_message = "The request body is too large."


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

    def __init__(
        self, message: str | None = None, creem_status: int | None = None, **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.creem_status = creem_status


class RateLimited(DomainError):
    """A rate limit is spent; `retry_after` says in how many seconds it resets."""

    status = 429
    code = "too_many_requests"
    default_message = "Too many requests. Please slow down."

    def __init__(self, message: str | None = None, retry_after: int = 60, **details: Any) -> None:
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


class InvalidUpload(ValidationFailed):
    """An uploaded image that cannot be used (type, size, pixels); nothing was spent."""

    code = "invalid_upload"


class GenerationNotFound(DomainError):
    status = 404
    code = "generation_not_found"
    default_message = "No such generation."


class StorageUnavailable(ServiceUnavailable):
    """The storage service could not be reached or refused the call (503, Retry-After)."""

    default_message = "File storage is not answering right now. Please try again in a minute."

    def __init__(self, message: str | None = None, retry_after: int = 30) -> None:
        super().__init__(message, retry_after=retry_after)


class StoredObjectMissing(DomainError):
    status = 404
    code = "file_not_found"
    default_message = "That file is no longer available."


class SubscriptionStillRenews(DomainError):
    status = 409
    code = "subscription_still_renews"
    default_message = (
        "Your Pro subscription still renews. Cancel it on the Subscription page "
        "first, then delete your account."
    )


class AccountAlreadyDeleted(DomainError):
    status = 409
    code = "account_deleted"
    default_message = "This account has already been deleted."


class UnknownExport(DomainError):
    status = 404
    code = "unknown_export"
    default_message = "There is no such export."


class DemoDataExists(DomainError):
    status = 409
    code = "demo_data_exists"
    default_message = "Demo data is already there; nothing was added."


class BadJson(DomainError):
    status = 400
    code = "bad_json"
    default_message = "The request body must be a JSON object."
