"""`flask media`: image derivatives (WebP thumbnails and display images) and the landing
page's examples."""

from __future__ import annotations

import click
from flask.cli import AppGroup

media_cli = AppGroup("media", help="Image derivatives and the landing page's examples.")


@media_cli.command("backfill")
@click.option(
    "--now",
    "run_now",
    is_flag=True,
    help="Make the copies in this process instead of queueing a job per design.",
)
@click.option("--limit", default=1000, show_default=True, help="Designs to do in this run.")
def backfill(run_now: bool, limit: int) -> None:
    """Make the WebP copies of designs made before they existed. Safe to run twice: designs
    that have their copies are skipped."""
    import tempfile
    from pathlib import Path

    from credit_app.jobs import enqueue_now
    from credit_app.platform.extensions import db
    from credit_app.platform.storage import get_storage
    from credit_app.services import generations

    pending = generations.generations_missing_variants(limit)
    if not pending:
        click.echo("Every design has its WebP copies.")
        return
    if not run_now:
        for generation_pk in pending:
            enqueue_now("make_image_variants", generation_pk)
        click.echo(f"Queued WebP copies for {len(pending)} designs (job make_image_variants).")
        return
    storage = get_storage()
    for generation_pk in pending:
        with tempfile.TemporaryDirectory(prefix="variants-") as workdir:
            generations.backfill_variants(generation_pk, storage, Path(workdir))
        db.session.commit()
    click.echo(f"Made WebP copies for {len(pending)} designs.")


@media_cli.command("examples")
def build_examples() -> None:
    """Make the landing page's before/after examples with the local provider (done on first
    request too, when they are missing)."""
    from credit_app.generation.landing_examples import EXAMPLES, ensure_examples

    folder = ensure_examples(force=True)
    click.echo(f"Made {len(EXAMPLES)} landing examples in {folder}.")
