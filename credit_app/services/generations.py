"""Generations: start one (its credit already held), claim it, and settle its credit.

The credit follows the work: the view's `@credit_required` holds it, `complete_generation`
spends the hold when the provider succeeded, `fail_generation` releases it, and
`fail_abandoned_generations` closes generations whose hold the sweeper expired.
The job in credit_app.jobs.generations drives these steps and commits between them.
"""

from __future__ import annotations

import logging
import mimetypes
import posixpath
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from credit_app.errors import (
    GenerationNotFound,
    StorageUnavailable,
    StoredObjectMissing,
)
from credit_app.generation.base import GenerationError, GenerationRequest, GenerationResult
from credit_app.generation.images import VariantError, make_variants
from credit_app.generation.options import MASK_KEYS, check_options
from credit_app.generation.uploads import CheckedUpload
from credit_app.models import (
    CreditReservation,
    Generation,
    GenerationStatus,
    ReservationStatus,
)
from credit_app.platform import after_commit
from credit_app.platform.extensions import db
from credit_app.platform.input_text import clean_text
from credit_app.platform.storage import Storage, sibling_key
from credit_app.services import analytics, credits, fair_use
from credit_app.services.credits import utcnow

log = logging.getLogger(__name__)


def _remove_uploads(uploads: list[tuple[Storage, str]]) -> None:
    """After a rollback: delete the uploads stored for generations that were never saved (the
    folder of each, `<user>/<reservation>/`). Storage that does not answer leaves the file,
    logged."""
    for storage, key in uploads:
        try:
            storage.delete_prefix(posixpath.dirname(key))
        except StorageUnavailable:
            log.warning("could not remove the upload %s of a rolled-back generation", key)


after_commit.register("uploads", list, None, on_rollback=_remove_uploads)


def _fraction(raw: Mapping[str, Any], name: str) -> float | None:
    """A percentage of the photo from the form (0 to 100) as a fraction; None when the field
    is not a number."""
    try:
        return float(raw.get(name, "")) / 100
    except (TypeError, ValueError):
        return None


def parse_options(feature: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The form's choices for `feature`, checked (generation.options.check_options: every
    choice required, the prompt cleaned), as the generation stores them.

    Raises UnknownFeature, ValidationFailed naming the field.
    """
    options = {name: raw.get(name) for name in ("room_type", "style", "motion")}
    options["prompt"] = clean_text(raw.get("prompt") or "")
    options["mask"] = {key: _fraction(raw, f"mask_{key}") for key in MASK_KEYS}
    return check_options(feature, options, fill_defaults=False).as_options()


def new_generation_id() -> str:
    """A fresh id for a form, so that submitting it twice starts one generation."""
    return uuid.uuid4().hex


def find_generation(user_id: int, generation_pk: int) -> Generation:
    """The user's own generation. Raises GenerationNotFound (also for another user's)."""
    generation = db.session.get(Generation, generation_pk)
    if generation is None or generation.user_id != user_id:
        raise GenerationNotFound()
    return generation


def start_generation(
    reservation: CreditReservation,
    options: dict[str, Any],
    upload: CheckedUpload,
    storage: Storage,
) -> tuple[Generation, bool]:
    """Record a generation for a held credit and store its upload.

    Returns the generation and whether it is new; a repeat of the same form (same
    generation id) returns the first one and stores nothing. A Pro user's generation past
    the day's fair-use mark is put on the fair-use queue (services/fair_use.py).
    Raises StorageUnavailable.
    """
    existing = db.session.execute(
        select(Generation).where(
            Generation.user_id == reservation.user_id,
            Generation.generation_id == reservation.generation_id,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    input_key = storage.locator(f"{reservation.user_id}/{reservation.id}/input.{upload.extension}")
    storage.put(input_key, upload.data, mimetypes.guess_type(input_key)[0])
    after_commit.defer("uploads").append((storage, input_key))
    generation = Generation(
        user_id=reservation.user_id,
        generation_id=reservation.generation_id,
        reservation_id=reservation.id,
        feature=reservation.feature,
        options=options,
        input_path=input_key,
        status=GenerationStatus.QUEUED,
        queue=fair_use.queue_for_new_generation(reservation.user_id),
    )
    db.session.add(generation)
    db.session.flush()
    return generation, True


def claim_generation(
    generation_pk: int,
    claimed_by: str | None = None,
    stale_after: timedelta | None = None,
    now: datetime | None = None,
) -> Generation | None:
    """Move a generation to running for the job run `claimed_by`; None when it is not this
    run's to do: finished, running under another live run, or its credit hold has ended or
    expired (the sweeper returns that credit and fails it).

    A queued generation is claimed; a running one only by a retry of the run that claimed it
    (the same rq job id, after a transient error) or once its claim is older than
    `stale_after` (its worker died).
    """
    now = now or utcnow()
    claimable = Generation.status == GenerationStatus.QUEUED
    if claimed_by is not None:
        claimable = claimable | (
            (Generation.status == GenerationStatus.RUNNING) & (Generation.claimed_by == claimed_by)
        )
    if stale_after is not None:
        claimable = claimable | (
            (Generation.status == GenerationStatus.RUNNING)
            & (Generation.started_at < now - stale_after)
        )
    hold_is_live = (
        select(CreditReservation.id)
        .where(
            CreditReservation.id == Generation.reservation_id,
            CreditReservation.status == ReservationStatus.PENDING,
            CreditReservation.expires_at > now,
        )
        .exists()
    )
    claimed = db.session.execute(
        update(Generation)
        .where(
            Generation.id == generation_pk,
            claimable,
            Generation.reservation_id.is_(None) | hold_is_live,
        )
        .values(
            status=GenerationStatus.RUNNING,
            started_at=now,
            claimed_by=claimed_by,
            attempts=Generation.attempts + 1,
        )
        .returning(Generation.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        return None
    generation = db.session.get(Generation, generation_pk)
    db.session.refresh(generation)
    return generation


def build_request(generation: Generation, storage: Storage, workdir: Path) -> GenerationRequest:
    """The provider's request, with the upload copied from storage into `workdir`.

    Raises GenerationError when the upload is gone, StorageUnavailable.
    """
    input_path = workdir / posixpath.basename(generation.input_path)
    try:
        storage.download(generation.input_path, input_path)
    except StoredObjectMissing:
        raise GenerationError(
            "The uploaded photo is no longer available. Your credit was "
            "returned; please upload it again."
        ) from None
    return GenerationRequest(
        generation_id=generation.generation_id,
        feature=generation.feature,
        input_path=input_path,
        output_dir=workdir / "output",
        options=generation.options,
        seed=generation.id,
    )


def store_output(generation: Generation, result: GenerationResult, storage: Storage) -> str:
    """Upload the provider's output next to the generation's input; returns its key.

    Raises StorageUnavailable.
    """
    key = sibling_key(generation.input_path, f"output{result.output_path.suffix}")
    storage.put_file(key, result.output_path, result.media_type)
    return key


def store_variants(files: Mapping[str, tuple[Path, str]], storage: Storage) -> dict[str, list]:
    """Make the WebP copies (thumbnail and display sizes) of each local file, stored beside
    its original: `files` maps "input"/"output" to (local path, stored key). Returns the
    widths made per image; an image that cannot be decoded gets none (logged), so its page
    falls back to the original.

    Raises StorageUnavailable.
    """
    variants: dict[str, list] = {}
    for which, (path, key) in files.items():
        try:
            variants[which] = make_variants(path, key, storage)
        except VariantError as exc:
            log.warning("no image variants for %s: %s", key, exc)
    return variants


def backfill_variants(generation_pk: int, storage: Storage, workdir: Path) -> dict[str, list]:
    """Make the missing WebP copies of a generation made before they existed (its upload,
    and its result once it succeeded), from the originals in storage; returns the widths now
    recorded. Images that already have copies are left alone, so running it twice does the
    work once.

    Raises GenerationNotFound, StorageUnavailable.
    """
    generation = db.session.get(Generation, generation_pk)
    if generation is None:
        raise GenerationNotFound()
    variants = dict(generation.image_variants or {})
    wanted = {"input": generation.input_path}
    if generation.status == GenerationStatus.SUCCEEDED and generation.output_path:
        wanted["output"] = generation.output_path
    files = {}
    for which, key in wanted.items():
        if variants.get(which):
            continue
        path = workdir / f"{which}{posixpath.splitext(key)[1]}"
        try:
            storage.download(key, path)
        except StoredObjectMissing:
            log.warning("generation %s: its %s %s is gone; no variants", generation_pk, which, key)
            continue
        files[which] = (path, key)
    if files:
        variants.update(store_variants(files, storage))
        generation.image_variants = variants
        db.session.flush()
    return variants


def generations_missing_variants(limit: int = 1000) -> list[int]:
    """Ids of generations with an image that has no WebP copies yet (the backfill's work):
    the upload of any generation, the result of a succeeded one."""
    missing_input = ~Generation.image_variants.has_key("input")
    missing_output = (
        (Generation.status == GenerationStatus.SUCCEEDED)
        & Generation.output_path.is_not(None)
        & ~Generation.image_variants.has_key("output")
    )
    return list(
        db.session.execute(
            select(Generation.id)
            .where(missing_input | missing_output)
            .order_by(Generation.id)
            .limit(limit)
        ).scalars()
    )


def complete_generation(
    generation_pk: int,
    result: GenerationResult,
    provider_name: str,
    output_key: str,
    variants: Mapping[str, list] | None = None,
) -> Generation:
    """Record the stored output (its key) and its WebP copies, and spend the held credit.

    Raises ReservationExpired when the hold timed out first (the caller then fails it).
    """
    generation = db.session.get_one(Generation, generation_pk)
    if generation.reservation_id is not None:
        credits.commit_reservation(generation.reservation_id)
    generation.status = GenerationStatus.SUCCEEDED
    generation.output_path = output_key
    generation.output_media_type = result.media_type
    if variants:
        generation.image_variants = {**(generation.image_variants or {}), **variants}
    generation.provider = provider_name
    generation.finished_at = utcnow()
    db.session.flush()
    return generation


def fail_generation(generation_pk: int, message: str) -> Generation:
    """Mark the generation failed with a message for the user and give its credit back.

    A generation that is already finished is left as it is.
    """
    generation = db.session.get_one(Generation, generation_pk)
    if generation.is_finished:
        return generation
    if generation.reservation_id is not None:
        reservation = db.session.get(CreditReservation, generation.reservation_id)
        if reservation is not None and reservation.is_pending:
            credits.release_reservation(generation.reservation_id, reason="generation_failed")
    generation.status = GenerationStatus.FAILED
    generation.error_message = message
    generation.finished_at = utcnow()
    analytics.track("generation_failed", generation.user_id, feature=generation.feature)
    db.session.flush()
    return generation


def fail_abandoned_generations() -> list[int]:
    """Fail unfinished generations whose credit hold has ended (expired by the sweeper)."""
    abandoned = (
        db.session.execute(
            select(Generation)
            .join(CreditReservation, CreditReservation.id == Generation.reservation_id)
            .where(
                Generation.status.in_([GenerationStatus.QUEUED, GenerationStatus.RUNNING]),
                CreditReservation.status == ReservationStatus.EXPIRED,
            )
        )
        .scalars()
        .all()
    )
    for generation in abandoned:
        generation.status = GenerationStatus.FAILED
        generation.error_message = (
            "The generation took too long and was stopped. Your credit was returned."
        )
        generation.finished_at = utcnow()
        analytics.track(
            "generation_failed",
            generation.user_id,
            feature=generation.feature,
            properties={"reason": "timeout"},
        )
    db.session.flush()
    return [generation.id for generation in abandoned]


def list_generations(user_id: int, limit: int = 50) -> list[Generation]:
    return list(
        db.session.execute(
            select(Generation)
            .where(Generation.user_id == user_id)
            .order_by(Generation.id.desc())
            .limit(limit)
        ).scalars()
    )
