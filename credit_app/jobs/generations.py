"""The generation job: claim, run the provider outside any transaction, settle the credit.

A transient database or Redis error (an outage, a failover) is raised, so that rq retries the
job on the schedule in jobs/registry.py; the retry claims the generation again by its rq job
id. Any other failure fails the generation and returns its credit.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path

from flask import current_app
from rq import get_current_job

from credit_app.errors import GenerationNotFound, ReservationExpired, StorageUnavailable
from credit_app.generation.base import GenerationError, GenerationResult
from credit_app.generation.providers import provider_from_config
from credit_app.jobs import TRANSIENT_ERRORS, job_context, registry
from credit_app.models import Generation
from credit_app.platform.extensions import db
from credit_app.platform.storage import get_storage
from credit_app.services import generations

log = logging.getLogger(__name__)

CRASH_MESSAGE = "Something went wrong while generating. Your credit was returned; please try again."
STORAGE_MESSAGE = (
    "File storage is not answering, so the generation could not run. Your credit "
    "was returned; please try again in a minute."
)
TIMEOUT_MESSAGE = "The generation took too long and was stopped. Your credit was returned."


def run_generation(generation_pk: int) -> str:
    """Run one generation; safe to run twice (only the run that claims it works).

    Returns the generation's final status, or "skipped". Raises a TRANSIENT_ERRORS error
    (database or Redis unavailable) for rq to retry.
    """
    job = get_current_job()
    with job_context() as app:
        stale_after = timedelta(
            seconds=registry.job("run_generation").timeout_seconds(app.config) + 1
        )
        try:
            generation = generations.claim_generation(
                generation_pk, job.id if job else None, stale_after=stale_after
            )
            db.session.commit()
        except TRANSIENT_ERRORS:
            db.session.rollback()
            log.warning("generation %s: could not claim it; rq retries", generation_pk)
            raise
        if generation is None:
            return "skipped"
        try:
            output_key, result, provider_name, variants = _generate(generation)
        except GenerationError as exc:
            return _fail(generation_pk, exc.message)
        except StorageUnavailable:
            log.exception("generation %s: storage unavailable", generation_pk)
            return _fail(generation_pk, STORAGE_MESSAGE)
        except Exception:
            log.exception("generation %s crashed", generation_pk)
            return _fail(generation_pk, CRASH_MESSAGE)
        try:
            generations.complete_generation(
                generation_pk, result, provider_name, output_key, variants
            )
            db.session.commit()
        except ReservationExpired:
            db.session.rollback()
            return _fail(generation_pk, TIMEOUT_MESSAGE)
        except TRANSIENT_ERRORS:
            db.session.rollback()
            log.warning("generation %s: could not record the result; rq retries", generation_pk)
            raise
        return "succeeded"


def _generate(generation: Generation) -> tuple[str, GenerationResult, str, dict[str, list]]:
    """Fetch the upload from storage into a scratch folder, run the provider there and store
    its output and the WebP copies of both (thumbnail and display sizes); returns (output
    key, result, provider name, variant widths). The scratch folder is removed either way,
    so the worker's disk holds nothing between jobs.

    Raises GenerationError, StorageUnavailable, or whatever the provider crashed with.
    """
    storage = get_storage()
    provider = provider_from_config(current_app.config)
    with tempfile.TemporaryDirectory(prefix="generation-") as workdir:
        request = generations.build_request(generation, storage, Path(workdir))
        result = provider.generate(request)
        output_key = generations.store_output(generation, result, storage)
        variants = generations.store_variants(
            {
                "input": (request.input_path, generation.input_path),
                "output": (result.output_path, output_key),
            },
            storage,
        )
        return output_key, result, provider.name, variants


def make_image_variants(generation_pk: int) -> str:
    """The backfill of one generation made before WebP copies existed: make the missing ones
    from the stored originals. Safe to run twice (images with copies are skipped).

    Returns "done" or "skipped" (the generation is gone). Raises a TRANSIENT_ERRORS error or
    StorageUnavailable for rq to retry.
    """
    with job_context(), tempfile.TemporaryDirectory(prefix="variants-") as workdir:
        try:
            generations.backfill_variants(generation_pk, get_storage(), Path(workdir))
            db.session.commit()
        except GenerationNotFound:
            db.session.rollback()
            return "skipped"
        except Exception:
            db.session.rollback()
            raise
    return "done"


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
