"""Fair use for Pro: past the day's mark a Pro user's generations go to the lowest-priority
queue, still run, and say so calmly; free users are never affected; admins see the usage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import select

from credit_app.generation.features import FEATURES
from credit_app.jobs import recovery, registry
from credit_app.jobs.registry import (
    GENERATION_FAIR_USE_QUEUE,
    GENERATION_QUEUE,
    QUEUE_NAMES,
    get_queue,
)
from credit_app.models import CreditReservation, Generation
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import fair_use
from tests.blueprints.test_generations import start

NOTE = "data-fair-use-note"


@pytest.fixture(autouse=True)
def local_generations(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "GENERATION_STORAGE_PATH", tmp_path / "generations")
    monkeypatch.setitem(app.config, "GENERATION_PROVIDER", "local")
    monkeypatch.setitem(app.config, "PRO_FAIR_USE_DAILY_GENERATIONS", 2)
    for name in QUEUE_NAMES:
        get_queue(name).empty()
    yield
    for name in QUEUE_NAMES:
        get_queue(name).empty()


@pytest.fixture
def pro(make_user):
    return make_user(plan="pro")


@pytest.fixture
def pro_client(app, pro):
    client = app.test_client(user=pro)
    client.environ_base["HTTP_SEC_FETCH_SITE"] = "same-origin"
    return client


def generations_of(user) -> list[Generation]:
    return list(
        db.session.execute(
            select(Generation)
            .where(Generation.user_id == user.id)
            .order_by(Generation.id)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def queued_generation_ids(queue_name: str) -> list[int]:
    return [job.args[0] for job in Queue(queue_name, connection=get_redis()).get_jobs()]


def test_past_the_mark_generations_go_to_the_fair_use_queue_and_say_so(pro_client, pro):
    responses = [start(pro_client, "interior", generation_id=f"g{index}") for index in range(4)]
    assert all(response.status_code == 200 for response in responses)
    rows = generations_of(pro)
    assert [row.queue for row in rows] == [
        GENERATION_QUEUE,
        GENERATION_QUEUE,
        GENERATION_FAIR_USE_QUEUE,
        GENERATION_FAIR_USE_QUEUE,
    ]
    assert queued_generation_ids(GENERATION_QUEUE) == [rows[0].id, rows[1].id]
    assert queued_generation_ids(GENERATION_FAIR_USE_QUEUE) == [rows[2].id, rows[3].id]
    assert [NOTE in response.get_data(as_text=True) for response in responses] == [
        False,
        False,
        True,
        True,
    ]
    page = pro_client.get(f"/dashboard/{FEATURES['interior'].slug}").get_data(as_text=True)
    assert NOTE in page and "You have made 4 designs today" in page


def test_fair_use_generations_still_run_to_a_result(pro_client, pro):
    for index in range(3):
        start(pro_client, "interior", generation_id=f"g{index}")
    queues = [get_queue(name) for name in QUEUE_NAMES]
    SimpleWorker(queues, connection=get_redis()).work(burst=True)
    assert [row.status for row in generations_of(pro)] == ["succeeded"] * 3
    latest = generations_of(pro)[-1]
    progress = pro_client.get(
        f"/dashboard/generations/{latest.id}", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "Done!" in progress and NOTE not in progress


def test_the_worker_takes_everyone_elses_generations_first(app, pro_client, pro, make_user):
    for index in range(3):
        start(pro_client, "interior", generation_id=f"g{index}")
    other = app.test_client(user=make_user())
    start(other, "interior", generation_id="other")
    queues = [Queue(name, connection=get_redis()) for name in QUEUE_NAMES]
    order = []
    while (found := Queue.dequeue_any(queues, None, connection=get_redis())) is not None:
        job, _queue = found
        order.append(job.args[0])
    pro_rows = generations_of(pro)
    assert order[-1] == pro_rows[2].id  # the one past the mark comes last
    assert QUEUE_NAMES[-1] == GENERATION_FAIR_USE_QUEUE


def test_failed_generations_do_not_count_and_free_users_are_never_slowed(
    app, pro_client, pro, user_client, user, monkeypatch
):
    for index in range(2):
        start(pro_client, "interior", generation_id=f"g{index}")
    for row in generations_of(pro):
        row.status = "failed"
    db.session.flush()
    assert fair_use.fair_use_of(pro.id).generations_today == 0
    start(pro_client, "interior", generation_id="g-after")
    assert generations_of(pro)[-1].queue == GENERATION_QUEUE
    monkeypatch.setitem(app.config, "PRO_FAIR_USE_DAILY_GENERATIONS", 1)
    for index in range(3):
        start(user_client, "interior", generation_id=f"free-{index}")
    assert {row.queue for row in generations_of(user)} == {GENERATION_QUEUE}
    assert not fair_use.fair_use_of(user.id).past_mark


def test_yesterdays_generations_do_not_count(pro_client, pro):
    for index in range(3):
        start(pro_client, "interior", generation_id=f"g{index}")
    for row in generations_of(pro):
        row.created_at = row.created_at - timedelta(days=1)
    db.session.flush()
    assert not fair_use.fair_use_of(pro.id).past_mark
    start(pro_client, "interior", generation_id="today")
    assert generations_of(pro)[-1].queue == GENERATION_QUEUE


def test_recovery_queues_a_stranded_fair_use_generation_on_its_own_queue(app, pro_client, pro):
    for index in range(3):
        start(pro_client, "interior", generation_id=f"g{index}")
    for name in QUEUE_NAMES:
        get_queue(name).empty()
    rows = generations_of(pro)
    for row in rows:
        row.created_at = row.created_at - timedelta(minutes=5)
    db.session.commit()
    assert recovery.requeue_stranded_work()["generations"] == 3
    assert queued_generation_ids(GENERATION_QUEUE) == [rows[0].id, rows[1].id]
    assert queued_generation_ids(GENERATION_FAIR_USE_QUEUE) == [rows[2].id]
    assert registry.generation_job("nonsense") == "run_generation"


def test_admins_see_usage_per_user(pro_client, pro, admin_client):
    for index in range(3):
        start(pro_client, "interior", generation_id=f"g{index}")
    listing = admin_client.get("/admin/fair-use")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert pro.email in html and "past the mark" in html
    (usage,) = [row for row in fair_use.daily_usage() if row.user_id == pro.id]
    assert (usage.generations, usage.fair_use_generations, usage.past_mark) == (3, 1, True)
    detail = admin_client.get(f"/admin/users/{pro.id}").get_data(as_text=True)
    assert "Usage and fair use" in detail and "past the mark" in detail
    history = fair_use.usage_history(pro.id)
    assert [(total, fair) for _day, total, fair in history] == [(3, 1)]


def test_the_fair_use_page_is_for_admins_only(user_client):
    assert user_client.get("/admin/fair-use").status_code == 403


def test_past_the_mark_a_pro_hold_lasts_long_enough_to_wait_its_turn(app, pro_client, pro):
    for index in range(3):
        start(pro_client, "interior", generation_id=f"g{index}")
    holds = [db.session.get(CreditReservation, row.reservation_id) for row in generations_of(pro)]
    normal = app.config["RESERVATION_TIMEOUT_SECONDS"]
    longer = app.config["FAIR_USE_RESERVATION_TIMEOUT_SECONDS"]
    assert longer > normal
    # The holds were made moments apart: the last one reaches `longer - normal` further.
    first, second, third = (hold.expires_at for hold in holds)
    assert round((second - first).total_seconds() / 60) == 0
    assert round((third - second).total_seconds() / 60) == round((longer - normal) / 60)
    assert all(hold.amount == 0 for hold in holds)  # a Pro hold costs nothing
