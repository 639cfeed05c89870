"""The generation job: claim, run the provider outside any transaction, settle the credit.

A transient database or Redis error (an outage, a failover) is raised, so that rq retries the
job on the schedule in jobs/registry.py; the retry claims the generation again by its rq job
id. Any other failure fails the generation and returns its credit.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq import get_current_job

from credit_app.errors import ReservationExpired
from credit_app.extensions import db
from credit_app.generation.base import GenerationError
from credit_app.generation.providers import provider_from_config
from credit_app.jobs import TRANSIENT_ERRORS, job_context, registry
from credit_app.services import generations

log = logging.getLogger(__name__)

CRASH_MESSAGE = "Something went wrong while generating. Your credit was returned; please try again."
TIMEOUT_MESSAGE = "The generation took too long and was stopped. Your credit was returned."


def run_generation(generation_pk: int) -> str:
    """Run one generation; safe to run twice (only the run that claims it works).

    Returns the generation's final status, or "skipped". Raises a TRANSIENT_ERRORS error
    (database or Redis unavailable) for rq to retry.
    """
    job = get_current_job()
    with job_context() as app:
        stale_after = timedelta(
            seconds=registry.job("run_generation").timeout_seconds(app.config) + 1)
        try:
            generation = generations.claim_generation(generation_pk, job.id if job else None,
                                                      stale_after=stale_after)
            db.session.commit()
        except TRANSIENT_ERRORS:
            db.session.rollback()
            log.warning("generation %s: could not claim it; rq retries", generation_pk)
            raise
        if generation is None:
            return "skipped"
        try:
            provider = provider_from_config(current_app.config)
            result = provider.generate(generations.build_request(generation))
        except GenerationError as exc:
            return _fail(generation_pk, exc.message)
        except Exception:
            log.exception("generation %s crashed", generation_pk)
            return _fail(generation_pk, CRASH_MESSAGE)
        try:
            generations.complete_generation(generation_pk, result, provider.name)
            db.session.commit()
        except ReservationExpired:
            db.session.rollback()
            return _fail(generation_pk, TIMEOUT_MESSAGE)
        except TRANSIENT_ERRORS:
            db.session.rollback()
            log.warning("generation %s: could not record the result; rq retries",
                        generation_pk)
            raise
        return "succeeded"


def _fail(generation_pk: int, message: str) -> str:
    """Raises a TRANSIENT_ERRORS error when the failure cannot be recorded now."""
    db.session.rollback()
    try:
        generations.fail_generation(generation_pk, message)
        db.session.commit()
    except TRANSIENT_ERRORS:
        db.session.rollback()
        raise
    return "failed"
