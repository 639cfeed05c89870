"""Credit jobs: return the credit of holds that outlived their timeout, expire lapsed lots,
and refill the free tier's balances once per period."""

from __future__ import annotations

import logging

from flask import current_app

from credit_app.jobs import job_context
from credit_app.platform.extensions import db
from credit_app.services import credits, generations

log = logging.getLogger(__name__)

BATCH = 500


def sweep_expired_reservations() -> int:
    """Expire every overdue reservation, fail the generations they held; returns the count."""
    with job_context():
        expired = credits.expire_overdue_reservations()
        generations.fail_abandoned_generations()
        db.session.commit()
    if expired:
        log.info("expired %d overdue reservations: %s", len(expired), expired)
    return len(expired)


def expire_lapsed_credits() -> int:
    """Write the `expire` rows of every lot past its expiry, a batch of users per commit;
    returns how many rows it wrote. Safe to run twice or on two workers at once."""
    written = 0
    with job_context():
        while True:
            batch = credits.expire_lapsed_lots(limit=BATCH)
            db.session.commit()
            written += batch
            if batch == 0:
                break
    if written:
        log.info("expired the credits of %d lapsed lots", written)
    return written


def refill_free_credits() -> int:
    """Top every free user up to FREE_REFILL_TO once this FREE_REFILL_PERIOD (nothing when
    it is 0, the default); returns how many users it looked at. Safe to run twice: each
    user's period is claimed once (credit_refills' key)."""
    looked_at = 0
    with job_context():
        target = current_app.config["FREE_REFILL_TO"]
        if not target:
            return 0
        period = current_app.config["FREE_REFILL_PERIOD"]
        while True:
            batch = credits.refill_free_users(target, period, limit=BATCH)
            db.session.commit()
            looked_at += batch
            if batch < BATCH:
                break
    if looked_at:
        log.info("refilled free balances: looked at %d users", looked_at)
    return looked_at
