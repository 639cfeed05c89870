"""Credit jobs: return the credit of holds that outlived their timeout."""

from __future__ import annotations

import logging

from credit_app.extensions import db
from credit_app.jobs import job_context
from credit_app.services import credits, generations

log = logging.getLogger(__name__)


def sweep_expired_reservations() -> int:
    """Expire every overdue reservation, fail the generations they held; returns the count."""
    with job_context():
        expired = credits.expire_overdue_reservations()
        generations.fail_abandoned_generations()
        db.session.commit()
    if expired:
        log.info("expired %d overdue reservations: %s", len(expired), expired)
    return len(expired)
