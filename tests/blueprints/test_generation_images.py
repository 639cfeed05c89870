"""Thumbnails and display images of designs: made by the generation job, stored beside the
originals (a folder and an S3 stand-in bucket), served with srcset, backfilled for old designs."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from rq import SimpleWorker
from sqlalchemy import select

from credit_app.errors import StoredObjectMissing
from credit_app.generation.images import variant_key
from credit_app.jobs.generations import make_image_variants, run_generation
from credit_app.jobs.registry import get_queue
from credit_app.models import Generation
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import generations
from tests.blueprints.test_generations import only_generation, photo, start
from tests.blueprints.test_generations import storage as storage


def finished(user_client, user, feature="interior") -> Generation:
    start(user_client, feature, image=photo(size=(900, 675)))
    generation = only_generation(user)
    assert run_generation(generation.id) == "succeeded"
    db.session.refresh(generation)
    return generation


def forget_variants(generation: Generation, storage) -> None:
    """Make the generation look like one made before derivatives existed."""
    for which, key in (("input", generation.input_path), ("output", generation.output_path)):
        for width in generation.variant_widths(which):
            path = variant_key(key, width)
            if hasattr(storage, "path_of"):
                storage.path_of(path).unlink()
            else:
                storage.client.delete_object(Bucket=storage.bucket, Key=storage.object_key(path))
    generation.image_variants = {}
    db.session.commit()


def test_the_job_stores_webp_copies_of_upload_and_result(user_client, user, storage):
    generation = finished(user_client, user)
    assert generation.image_variants == {"input": [320, 640], "output": [320, 640]}
    for _which, key in (("input", generation.input_path), ("output", generation.output_path)):
        for width in (320, 640):
            with storage.open(variant_key(key, width)) as stream:
                image = Image.open(io.BytesIO(stream.read()))
            assert image.format == "WEBP" and image.width == width


def test_variants_are_served_as_webp_cached_for_a_year_to_the_owner_only(
    app, user_client, user, make_user
):
    generation = finished(user_client, user)
    path = f"/dashboard/generations/{generation.id}/output/640w.webp"
    response = user_client.get(path)
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert Image.open(io.BytesIO(response.data)).size == (640, 480)
    assert (
        user_client.get(f"/dashboard/generations/{generation.id}/output/1280w.webp").status_code
        == 404
    )
    stranger = app.test_client(user=make_user())
    assert stranger.get(path).status_code == 404


def test_pages_use_the_variants_and_keep_originals_for_download(user_client, user):
    generation = finished(user_client, user)
    base = f"/dashboard/generations/{generation.id}"
    for page in ("/dashboard", "/dashboard/generations"):
        html = user_client.get(page).get_data(as_text=True)
        assert f'srcset="{base}/output/320w.webp 320w, {base}/output/640w.webp 640w"' in html
        assert f'src="{base}/output"' not in html
    detail = user_client.get(base).get_data(as_text=True)
    assert f"{base}/input/640w.webp 640w" in detail and f"{base}/output/640w.webp 640w" in detail
    assert re.search(rf'<img[^>]+src="{base}/output"', detail) is None
    assert f'href="{base}/output" download' in detail
    assert "data-compare-range" in detail


def test_a_video_result_shows_its_animation_and_a_still_thumbnail(user_client, user):
    generation = finished(user_client, user, feature="video")
    base = f"/dashboard/generations/{generation.id}"
    detail = user_client.get(base).get_data(as_text=True)
    assert re.search(rf'<img[^>]+src="{base}/output"', detail)
    assert "data-compare-range" not in detail
    assert f"{base}/output/320w.webp" in user_client.get("/dashboard").get_data(as_text=True)


def test_pages_fall_back_to_the_original_without_variants(user_client, user, storage):
    generation = finished(user_client, user)
    forget_variants(generation, storage)
    html = user_client.get("/dashboard").get_data(as_text=True)
    assert f'src="/dashboard/generations/{generation.id}/output"' in html


def test_backfill_job_makes_missing_copies_and_is_safe_twice(user_client, user, storage):
    generation = finished(user_client, user)
    forget_variants(generation, storage)
    with pytest.raises(StoredObjectMissing):
        storage.open(variant_key(generation.output_path, 320))
    assert generations.generations_missing_variants() == [generation.id]

    assert make_image_variants(generation.id) == "done"
    db.session.expire_all()
    again = db.session.get(Generation, generation.id)
    assert again.image_variants == {"input": [320, 640], "output": [320, 640]}
    with storage.open(variant_key(generation.output_path, 320)) as stream:
        first = stream.read()
    assert make_image_variants(generation.id) == "done"
    with storage.open(variant_key(generation.output_path, 320)) as stream:
        assert stream.read() == first
    assert generations.generations_missing_variants() == []
    assert make_image_variants(987654321) == "skipped"


def test_backfill_command_queues_then_runs_inline(app, user_client, user, storage):
    generation = finished(user_client, user)
    forget_variants(generation, storage)
    runner = app.test_cli_runner()
    get_queue("maintenance").empty()
    result = runner.invoke(args=["media", "backfill"])
    assert result.exit_code == 0 and "Queued WebP copies for 1 designs" in result.output
    assert get_queue("maintenance").count == 1
    SimpleWorker([get_queue("maintenance")], connection=get_redis()).work(burst=True)
    db.session.expire_all()
    assert db.session.get(Generation, generation.id).variant_widths("output") == [320, 640]

    forget_variants(db.session.get(Generation, generation.id), storage)
    result = runner.invoke(args=["media", "backfill", "--now"])
    assert result.exit_code == 0 and "Made WebP copies for 1 designs" in result.output
    result = runner.invoke(args=["media", "backfill", "--now"])
    assert "Every design has its WebP copies." in result.output
    db.session.expire_all()
    assert db.session.execute(select(Generation.image_variants)).scalar_one() == {
        "input": [320, 640],
        "output": [320, 640],
    }
