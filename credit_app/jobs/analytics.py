"""The analytics job on the `analytics` queue: the periodic roll-up (and purge)."""

from __future__ import annotations

import logging

from flask import current_app

from credit_app.jobs import job_context
from credit_app.platform.extensions import db
from credit_app.services import analytics

log = logging.getLogger(__name__)
MAX_BATCHES = 200


def roll_up_analytics(
    batch_size: int = analytics.DEFAULT_BATCH_SIZE, max_batches: int = MAX_BATCHES
) -> dict[str, int]:
    """Fold pending events into the rollups (a commit per batch), then delete rolled-up raw
    events older than ANALYTICS_RETENTION_DAYS. Safe to run twice or concurrently: a second
    run finds nothing pending. Returns how many events it folded and purged.
    """
    with job_context():
        folded = 0
        for _ in range(max_batches):
            count = analytics.roll_up(batch_size)
            db.session.commit()
            folded += count
            if count < batch_size:
                break
        purged = 0
        retention = current_app.config["ANALYTICS_RETENTION_DAYS"]
        while True:
            count = analytics.purge_rolled_up_events(retention)
            db.session.commit()
            purged += count
            if count == 0:
                break
    if folded or purged:
        log.info("analytics: folded %d events into the rollups, purged %d", folded, purged)
    return {"folded": folded, "purged": purged}
