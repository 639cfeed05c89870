"""The periodic reconciliation with Creem (billing/reconciliation.py): one run at a time,
committed customer by customer, so a run that dies keeps what it repaired and reported."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from credit_app.billing import reconciliation
from credit_app.billing.subscriptions import creem_client
from credit_app.jobs import job_context, registry
from credit_app.platform.extensions import db

log = logging.getLogger(__name__)
BATCH = 100


def reconcile_with_creem(now: datetime | None = None) -> dict[str, int | str]:
    """Run a reconciliation unless one is already running; returns its counts (or
    {"skipped": run id}). Safe to run twice: a second run finds nothing left to repair.

    Raises a database error (the run stays marked failed with its error when it can be
    written).
    """
    with job_context() as app:
        timeout = registry.job("reconcile_with_creem").timeout_seconds(app.config)
        going = reconciliation.running_run(timedelta(seconds=timeout))
        if going is not None:
            db.session.rollback()
            log.info("reconciliation run %s is still going; skipped", going.id)
            return {"skipped": going.id}
        run_id = reconciliation.start_run().id
        db.session.commit()
        client = creem_client()
        try:
            found = _run(run_id, client, now)
        except Exception as exc:
            db.session.rollback()
            log.exception("reconciliation run %s failed", run_id)
            reconciliation.finish_run(run_id, f"{type(exc).__name__}: {exc}"[:2000])
            db.session.commit()
            raise
        run = reconciliation.finish_run(run_id)
        counts = {
            "run": run_id,
            "customers": run.customers_checked,
            "subscriptions": run.subscriptions_checked,
            "differences": found,
        }
        db.session.commit()
    log.info("reconciliation with Creem: %s", counts)
    return counts


def _run(run_id: int, client, now: datetime | None) -> int:
    found = 0
    after: str | None = None
    while customers := reconciliation.known_customers(after, BATCH):
        for customer_id in customers:
            found += len(reconciliation.reconcile_customer(run_id, customer_id, client, now))
            db.session.commit()
        after = customers[-1]
    after_id = 0
    while rows := reconciliation.rows_without_customer(after_id, BATCH):
        after_id = rows[-1].id
        found += len(reconciliation.reconcile_rows(run_id, rows, client, now))
        db.session.commit()
    after_id = 0
    while users := reconciliation.users_to_check(after_id, BATCH * 2):
        after_id = users[-1]
        found += len(reconciliation.reconcile_plans(run_id, users, now))
        db.session.commit()
    return found
