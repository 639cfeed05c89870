"""The mail outbox: what to send, written in the transaction that asks for it, and sent by the
`deliver_email` job once that transaction commits.

Every message is a row of `outbound_emails`; a `dedupe_key` makes a notification one-time
(a second request with the same key writes nothing). Rendering happens in the job, where
links that carry a secret are signed, so no token is ever stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app, has_request_context, request, url_for
from sqlalchemy.dialects.postgresql import insert

from credit_app.models import OutboundEmail, User
from credit_app.models.base import lock_one
from credit_app.platform import mail
from credit_app.platform.extensions import db
from credit_app.services import account_tokens
from credit_app.services.credits import utcnow

# Subjects, formatted with the message's context.
SUBJECTS = {
    "verify_email": "Confirm your email address",
    "change_email": "Confirm your new email address",
    "password_reset": "Reset your Roomcraft password",
    "password_changed": "Your Roomcraft password was changed",
    "one_credit_left": "You have one credit left",
    "credits_used_up": "You've used all your free credits",
    "pro_welcome": "Welcome to Roomcraft Pro",
    "cancellation": "Your Pro subscription is canceled",
    "payment_failed": "Your payment failed: update your card to keep Pro",
}
DEFAULT_BASE_URL = "http://127.0.0.1:5000"


def base_url() -> str:
    """Where mailed links point: PUBLIC_URL, else the host of the current request."""
    configured = current_app.config.get("PUBLIC_URL")
    if configured:
        return configured
    if has_request_context():
        return request.host_url.rstrip("/")
    return DEFAULT_BASE_URL


def queue_email(
    to_address: str,
    template: str,
    *,
    user_id: int | None = None,
    context: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> int | None:
    """Write a message to the outbox and send it after commit. Returns its id, or None when
    a message with `dedupe_key` was written before. Raises KeyError for an unknown template.
    """
    from credit_app.jobs.mail import enqueue_delivery

    SUBJECTS[template]
    email_id = db.session.execute(
        insert(OutboundEmail)
        .values(
            to_address=to_address,
            template=template,
            user_id=user_id,
            context={"base_url": base_url(), **(context or {})},
            dedupe_key=dedupe_key,
        )
        .on_conflict_do_nothing(
            index_elements=["dedupe_key"], index_where=OutboundEmail.dedupe_key.isnot(None)
        )
        .returning(OutboundEmail.id)
    ).scalar_one_or_none()
    if email_id is not None:
        enqueue_delivery(email_id)
    return email_id


def _links(email: OutboundEmail, user: User | None) -> dict[str, str]:
    """The links a message needs, signed now when they carry a secret."""
    base = (email.context or {}).get("base_url", DEFAULT_BASE_URL).rstrip("/")
    links: dict[str, str] = {}
    with current_app.test_request_context("/"):

        def link(endpoint: str, **values: Any) -> str:
            return base + url_for(endpoint, **values)

        if email.template in ("verify_email", "change_email") and user is not None:
            token = account_tokens.verification_token(user.id, email.to_address)
            links["confirm"] = link("auth.verify_email", token=token)
        if email.template == "password_reset" and user is not None:
            links["reset"] = link("auth.reset_password", token=account_tokens.reset_token(user))
        links["upgrade"] = link("billing.subscription")
        links["subscription"] = link("billing.subscription")
        links["settings"] = link("auth.account", _anchor="notifications")
        links["dashboard"] = link("dashboard.home")
        links["forgot"] = link("auth.forgot_password")
    return links


def deliver(email_id: int, now: datetime | None = None) -> str:
    """Send one outbox message unless it was sent already; returns what happened.

    Raises MailDeliveryError (the attempt is counted; the caller commits and retries).
    """
    email = lock_one(OutboundEmail, OutboundEmail.id == email_id)
    if email is None:
        return "missing"
    if email.sent_at is not None:
        return "already sent"
    user = db.session.get(User, email.user_id) if email.user_id is not None else None
    if user is not None and user.is_deleted:
        email.sent_at = now or utcnow()
        email.last_error = "account deleted before sending"
        return "skipped"
    config = current_app.config
    context = {
        **(email.context or {}),
        "links": _links(email, user),
        "user": user,
        "to_address": email.to_address,
    }
    subject = SUBJECTS[email.template].format(**context)
    message = mail.render_message(
        config["MAIL_FROM"], email.to_address, subject, email.template, **context
    )
    settings = mail.parse_mail_url(config["MAIL_URL"], config["MAIL_TIMEOUT_SECONDS"])
    email.attempts += 1
    mail.send(settings, message)
    email.sent_at = now or utcnow()
    email.last_error = None
    return "sent"


def record_failure(email_id: int, error: BaseException) -> None:
    email = db.session.get(OutboundEmail, email_id)
    if email is not None:
        email.attempts += 1
        email.last_error = str(error)[:2000]
