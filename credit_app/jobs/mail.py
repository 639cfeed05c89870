"""Mail jobs (declared in jobs/registry.py): deliver an outbox message; decide the one-time
notifications that a ledger row or a subscription change implies."""

from __future__ import annotations

import logging

from credit_app.errors import MailDeliveryError
from credit_app.jobs import attempt, enqueue_after_commit, job_context
from credit_app.platform.extensions import db
from credit_app.services import mail, notifications

log = logging.getLogger(__name__)


def enqueue_delivery(email_id: int) -> None:
    """Send the outbox message once the current transaction commits (queue, timeout and
    retries: jobs/registry.py `deliver_email`)."""
    enqueue_after_commit("deliver_email", email_id, description=f"email {email_id}")


def deliver_email(email_id: int) -> str:
    """Send one outbox message; safe to run twice (the second run finds it sent).

    A failure notes the attempt and the error on the row and re-raises so that rq retries.
    """
    return attempt(
        f"email {email_id}",
        lambda: mail.deliver(email_id),
        lambda exc: mail.record_failure(email_id, exc),
        failure=MailDeliveryError,
        failed="not sent",
        logger=log,
    )


def notify_balance(user_id: int, transaction_id: int) -> str:
    """The one-credit-left or credits-used-up notice for a spend that crossed into it."""
    with job_context():
        outcome = notifications.balance_notice(user_id, transaction_id)
        db.session.commit()
    return outcome


def notify_plan_change(transaction_id: int) -> str:
    """Welcome to Pro, for the plan-change ledger row that made the user Pro."""
    with job_context():
        outcome = notifications.plan_notice(transaction_id)
        db.session.commit()
    return outcome


def notify_subscription(subscription_id: int) -> str:
    """Cancellation confirmed or payment failed, from the subscription row as it is now."""
    with job_context():
        outcome = notifications.subscription_notice(subscription_id)
        db.session.commit()
    return outcome
