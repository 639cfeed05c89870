"""The generation job: claim, run the provider outside any transaction, settle the credit."""

from __future__ import annotations

import logging

from flask import current_app

from credit_app.errors import ReservationExpired
from credit_app.extensions import db
from credit_app.generation.base import GenerationError
from credit_app.generation.providers import provider_from_config
from credit_app.jobs import job_context
from credit_app.services import generations

log = logging.getLogger(__name__)

CRASH_MESSAGE = "Something went wrong while generating. Your credit was returned; please try again."
TIMEOUT_MESSAGE = "The generation took too long and was stopped. Your credit was returned."


def run_generation(generation_pk: int) -> str:
    """Run one generation; safe to run twice (only the run that claims it works).

    Returns the generation's final status, or "skipped".
    """
    with job_context():
        generation = generations.claim_generation(generation_pk)
        db.session.commit()
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
        return "succeeded"


def _fail(generation_pk: int, message: str) -> str:
    db.session.rollback()
    generations.fail_generation(generation_pk, message)
    db.session.commit()
    return "failed"
