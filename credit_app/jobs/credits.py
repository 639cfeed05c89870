"""Credit jobs: return the credit of holds that outlived their timeout."""

from __future__ import annotations

import logging

from credit_app.extensions import db
from credit_app.jobs import job_context
from credit_app.services import credits

log = logging.getLogger(__name__)


def sweep_expired_reservations() -> int:
    """Expire every overdue reservation and commit; returns how many it expired."""
    with job_context():
        expired = credits.expire_overdue_reservations()
        db.session.commit()
    if expired:
        log.info("expired %d overdue reservations: %s", len(expired), expired)
    return len(expired)
