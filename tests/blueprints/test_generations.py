"""The six features end to end in the app: upload, hold the credit, run the job, settle."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from PIL import Image, ImageDraw
from rq import SimpleWorker
from sqlalchemy import func, select

from credit_app.errors import StoredObjectMissing
from credit_app.generation.features import FEATURES
from credit_app.jobs.credits import sweep_expired_reservations
from credit_app.jobs.generations import run_generation
from credit_app.jobs.registry import get_queue
from credit_app.models import AnalyticsEvent, CreditReservation, Generation
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.platform.storage import get_storage
from credit_app.services import credits
from tests.conftest import PASSWORD
from tests.ledger_support import ledger_balance
from tests.s3_support import free_port, s3_settings

FORMS = {
    "interior": {"room_type": "living_room", "style": "scandinavian", "prompt": "warm light"},
    "exterior": {"style": "farmhouse", "prompt": ""},
    "sketch": {"room_type": "bedroom", "style": "modern", "prompt": ""},
    "furnish": {"room_type": "dining_room", "style": "japandi"},
    "remove": {"mask_x": "40", "mask_y": "40", "mask_w": "20", "mask_h": "20"},
    "video": {"motion": "zoom_in"},
}


def photo(size=(160, 120), color=(180, 160, 140), image_format="PNG") -> io.BytesIO:
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((40, 50, 80, 90), fill=(60, 80, 120))
    data = io.BytesIO()
    image.save(data, image_format)
    data.seek(0)
    return data


@pytest.fixture(autouse=True, params=["filesystem", "s3"])
def storage(request, app, tmp_path, monkeypatch):
    """Every test runs on both backends: a folder, and a bucket on the S3 stand-in."""
    monkeypatch.setitem(app.config, "GENERATION_STORAGE_PATH", tmp_path / "generations")
    monkeypatch.setitem(app.config, "GENERATION_PROVIDER", "local")
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        for name, value in s3_settings(endpoint, bucket).items():
            monkeypatch.setitem(app.config, name, value)
    get_queue("generations").empty()
    yield get_storage()
    get_queue("generations").empty()


def stored_bytes(storage, key: str) -> bytes:
    with storage.open(key) as stream:
        return stream.read()


def start(client, feature="interior", generation_id="gen-1", image=None, htmx=True, **fields):
    data = {
        **FORMS[feature],
        "generation_id": generation_id,
        **fields,
        "image": (image or photo(), "room.png"),
    }
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(
        f"/dashboard/{FEATURES[feature].slug}",
        data=data,
        headers=headers,
        content_type="multipart/form-data",
    )


def only_generation(user) -> Generation:
    return db.session.execute(select(Generation).where(Generation.user_id == user.id)).scalar_one()


@pytest.mark.parametrize("feature", list(FEATURES))
def test_each_feature_page_renders_its_inputs(user_client, feature):
    page = user_client.get(f"/dashboard/{FEATURES[feature].slug}").get_data(as_text=True)
    assert FEATURES[feature].title in page and 'name="image"' in page
    assert 'name="generation_id"' in page
    for field in FORMS[feature]:
        assert f'name="{field}"' in page


def test_unknown_feature_page_is_404(user_client):
    assert user_client.get("/dashboard/teleport-room").status_code == 404


@pytest.mark.parametrize("feature", list(FEATURES))
def test_a_generation_holds_then_spends_one_credit(user_client, user, feature, storage):
    response = start(user_client, feature)
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'hx-swap-oob="true"' in text and "5/6" in text
    generation = only_generation(user)
    assert generation.status == "queued" and generation.feature == feature
    assert get_queue("generations").count == 1
    assert credits.get_user_credits(user.id).remaining == 5

    assert run_generation(generation.id) == "succeeded"
    db.session.refresh(generation)
    assert generation.status == "succeeded"
    assert stored_bytes(storage, generation.output_path).startswith((b"\x89PNG", b"RIFF", b"GIF8"))
    reservation = db.session.get(CreditReservation, generation.reservation_id)
    assert reservation.status == "committed"
    assert credits.get_user_credits(user.id).remaining == 5
    assert ledger_balance(user.id) == 5

    detail = user_client.get(
        f"/dashboard/generations/{generation.id}", headers={"HX-Request": "true"}
    )
    assert "Done!" in detail.get_data(as_text=True)
    output = user_client.get(f"/dashboard/generations/{generation.id}/output")
    assert output.status_code == 200 and output.mimetype.startswith("image/")
    Image.open(io.BytesIO(output.data)).verify()


def test_the_worker_runs_the_enqueued_job(user_client, user):
    start(user_client, "interior")
    SimpleWorker([get_queue("generations")], connection=get_redis()).work(burst=True)
    db.session.expire_all()
    assert only_generation(user).status == "succeeded"


def test_running_the_job_twice_works_once(user_client, user):
    start(user_client, "remove")
    generation = only_generation(user)
    assert run_generation(generation.id) == "succeeded"
    assert run_generation(generation.id) == "skipped"
    assert ledger_balance(user.id) == credits.get_user_credits(user.id).remaining == 5


def test_a_failed_generation_returns_the_credit_and_says_why(user_client, user, storage):
    start(user_client, "interior")
    generation = only_generation(user)
    storage.put(generation.input_path, b"this is no longer an image")
    assert run_generation(generation.id) == "failed"
    db.session.refresh(generation)
    assert generation.error_message
    assert credits.get_user_credits(user.id).remaining == 6
    detail = user_client.get(
        f"/dashboard/generations/{generation.id}", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert generation.error_message in detail and "6/6" in detail


def test_a_stuck_generation_is_failed_by_the_sweeper_with_its_credit_back(user_client, user):
    start(user_client, "video")
    generation = only_generation(user)
    reservation = db.session.get(CreditReservation, generation.reservation_id)
    reservation.expires_at = credits.utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert sweep_expired_reservations() == 1
    db.session.refresh(generation)
    assert generation.status == "failed" and "took too long" in generation.error_message
    assert credits.get_user_credits(user.id).remaining == 6
    assert run_generation(generation.id) == "skipped"


def test_double_submit_of_the_same_form_starts_one_generation(user_client, user):
    first = start(user_client, "interior", generation_id="same-form")
    second = start(user_client, "interior", generation_id="same-form")
    assert first.status_code == second.status_code == 200
    assert (
        db.session.scalar(
            select(func.count()).select_from(Generation).where(Generation.user_id == user.id)
        )
        == 1
    )
    assert get_queue("generations").count == 2
    generation = only_generation(user)
    assert [run_generation(generation.id), run_generation(generation.id)] == [
        "succeeded",
        "skipped",
    ]
    assert credits.get_user_credits(user.id).remaining == 5


def test_a_page_post_redirects_to_the_result_page(user_client, user):
    response = start(user_client, "interior", htmx=False)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/dashboard/generations/{only_generation(user).id}"


@pytest.mark.parametrize(
    "content,message",
    [
        (b"%PDF-1.4 not an image", "not a JPEG, PNG or WebP"),
        (b"", "empty"),
        (b"\x89PNG" + b"0" * (10 * 1024 * 1024), "larger than 10 MB"),
    ],
)
def test_bad_uploads_change_nothing(user_client, user, content, message):
    response = start(user_client, "interior", image=io.BytesIO(content))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert credits.get_user_credits(user.id).remaining == 6
    assert (
        db.session.scalar(
            select(func.count()).select_from(Generation).where(Generation.user_id == user.id)
        )
        == 0
    )


def test_tiny_and_gif_images_are_refused(user_client, user):
    assert "too small" in start(user_client, image=photo((20, 20))).get_data(as_text=True)
    gif = start(user_client, image=photo(image_format="GIF"))
    assert gif.status_code == 422 and "GIF images are not supported" in gif.get_data(as_text=True)
    assert credits.get_user_credits(user.id).remaining == 6


def test_missing_upload(user_client, user):
    response = user_client.post(
        "/dashboard/redecorate-room", data={**FORMS["interior"]}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422 and "Choose a photo" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "feature,fields,message",
    [
        ("interior", {"style": "baroque"}, "Choose a style"),
        ("interior", {"room_type": "garage"}, "Choose a room type"),
        ("interior", {"prompt": "x" * 501}, "under 500 characters"),
        ("video", {"motion": "spin"}, "Choose a camera motion"),
        ("remove", {"mask_w": "0"}, "Drag across the photo"),
        ("remove", {"mask_x": "90", "mask_w": "50"}, "inside the photo"),
        ("remove", {"mask_h": "101"}, "inside the photo"),
        ("remove", {"mask_x": "abc"}, "Mark the area"),
    ],
)
def test_bad_options_change_nothing(user_client, user, feature, fields, message):
    response = start(user_client, feature, **fields)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert credits.get_user_credits(user.id).remaining == 6


def test_without_credits_htmx_gets_the_upgrade_modal(user_client, user):
    for _ in range(6):
        credits.consume_credit(user.id, "interior")
    db.session.commit()
    response = start(user_client, "video")
    text = response.get_data(as_text=True)
    assert "You've used all your free credits!" in text
    assert "feature=video" in text and "Maybe Later" in text
    assert response.headers["HX-Retarget"] == "#modal-root"
    shown = (
        db.session.execute(
            select(AnalyticsEvent).where(
                AnalyticsEvent.user_id == user.id,
                AnalyticsEvent.event_type == "upgrade_modal_shown",
            )
        )
        .scalars()
        .all()
    )
    assert [(event.feature, event.credits_remaining) for event in shown] == [("video", 0)]
    assert (
        db.session.scalar(
            select(func.count()).select_from(Generation).where(Generation.user_id == user.id)
        )
        == 0
    )


def test_pro_users_generate_without_spending(app, make_user):
    pro = make_user(plan="pro")
    client = app.test_client(user=pro)
    for index in range(8):
        assert start(client, "interior", generation_id=f"pro-{index}").status_code == 200
    assert credits.get_user_credits(pro.id).remaining == 6


def test_results_are_served_only_to_their_owner(app, user_client, user, make_user):
    start(user_client, "interior")
    generation = only_generation(user)
    run_generation(generation.id)
    stranger = app.test_client(user=make_user())
    for path in (
        f"/dashboard/generations/{generation.id}",
        f"/dashboard/generations/{generation.id}/output",
        f"/dashboard/generations/{generation.id}/input",
    ):
        assert stranger.get(path).status_code == 404
        assert user_client.get(path).status_code == 200


def test_history_lists_the_users_generations(user_client, user):
    start(user_client, "interior")
    run_generation(only_generation(user).id)
    page = user_client.get("/dashboard/generations").get_data(as_text=True)
    assert "Redecorate a room" in page and "Succeeded" in page


def test_sidebar_state_is_kept_per_user(user_client, user):
    assert (
        user_client.post("/dashboard/preferences/sidebar", data={"collapsed": "true"}).status_code
        == 204
    )
    assert "sidebar-collapsed" in body_classes(user_client.get("/dashboard"))
    user_client.post("/dashboard/preferences/sidebar", data={"collapsed": "false"})
    assert "sidebar-collapsed" not in body_classes(user_client.get("/dashboard"))


def body_classes(response) -> list[str]:
    return re.search(r'<body[^>]*class="([^"]*)"', response.get_data(as_text=True)).group(1).split()


def test_a_finished_generation_is_never_failed_again(user_client, user):
    from credit_app.services import generations

    start(user_client, "interior")
    generation = only_generation(user)
    assert run_generation(generation.id) == "succeeded"
    generations.fail_generation(generation.id, "too late")
    db.session.refresh(generation)
    assert generation.status == "succeeded" and generation.error_message is None
    assert credits.get_user_credits(user.id).remaining == 5


def test_starting_generations_is_rate_limited_per_feature_page(app, user_client, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_GENERATE", "2 per minute")
    codes = [
        start(user_client, "interior", generation_id=f"limit-{n}").status_code for n in range(3)
    ]
    assert codes == [200, 200, 429]
    assert start(user_client, "video", generation_id="other-page").status_code == 200


def unreachable_storage(monkeypatch, app) -> None:
    """Point the app's storage at an S3 endpoint nobody listens on."""
    for name, value in s3_settings(f"http://127.0.0.1:{free_port()}", "gone").items():
        monkeypatch.setitem(app.config, name, value)


def test_storage_down_at_upload_is_a_503_with_retry_after_and_costs_nothing(
    app, user_client, user, monkeypatch
):
    unreachable_storage(monkeypatch, app)
    response = start(user_client, "interior")
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "File storage is not answering" in response.get_data(as_text=True)
    assert credits.get_user_credits(user.id).remaining == 6 == ledger_balance(user.id)
    assert (
        db.session.scalar(
            select(func.count()).select_from(Generation).where(Generation.user_id == user.id)
        )
        == 0
    )
    assert get_queue("generations").count == 0


def test_storage_down_in_the_job_fails_the_generation_and_returns_the_credit(
    app, user_client, user, monkeypatch
):
    start(user_client, "interior")
    generation = only_generation(user)
    unreachable_storage(monkeypatch, app)
    assert run_generation(generation.id) == "failed"
    db.session.refresh(generation)
    assert "File storage is not answering" in generation.error_message
    assert credits.get_user_credits(user.id).remaining == 6 == ledger_balance(user.id)


def test_a_result_gone_from_storage_is_a_404(user_client, user, storage):
    start(user_client, "interior")
    generation = only_generation(user)
    run_generation(generation.id)
    db.session.refresh(generation)
    storage.delete_prefix(str(user.id))
    response = user_client.get(f"/dashboard/generations/{generation.id}/output")
    assert response.status_code == 404
    assert "no longer available" in response.get_data(as_text=True)


def test_deleting_the_account_removes_its_files_from_storage(user_client, user, storage):
    start(user_client, "interior")
    generation = only_generation(user)
    run_generation(generation.id)
    db.session.refresh(generation)
    keys = (generation.input_path, generation.output_path)
    assert all(stored_bytes(storage, key) for key in keys)
    response = user_client.post("/settings/account", data={"password": PASSWORD, "confirm": "y"})
    assert response.status_code == 302
    for key in keys:
        with pytest.raises(StoredObjectMissing):
            storage.open(key)
