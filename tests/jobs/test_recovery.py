"""Work whose enqueue was lost is found and queued again; a lost enqueue never fails a request."""

from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from credit_app.extensions import db
from credit_app.jobs import enqueue_after_commit
from credit_app.jobs.credits import sweep_expired_reservations
from credit_app.jobs.recovery import STRANDED_AFTER, requeue_stranded_work
from credit_app.models import Generation
from credit_app.redis_client import get_queue
from credit_app.services import credits
from tests.blueprints.test_generations import only_generation, start


@pytest.fixture(autouse=True)
def empty_queues():
    for name in ("generations", "webhooks", "maintenance"):
        get_queue(name).empty()
    yield
    for name in ("generations", "webhooks", "maintenance"):
        get_queue(name).empty()


def test_a_stranded_generation_is_queued_again(user_client, user):
    start(user_client, "interior")
    generation = only_generation(user)
    get_queue("generations").empty()
    assert requeue_stranded_work() == {"webhook_events": 0, "generations": 0}
    db.session.execute(update(Generation).where(Generation.id == generation.id)
                       .values(created_at=credits.utcnow() - STRANDED_AFTER - timedelta(1)))
    db.session.commit()
    assert requeue_stranded_work()["generations"] == 1
    assert get_queue("generations").jobs[0].args == (generation.id,)


def test_a_resubmitted_form_queues_a_waiting_generation_again(user_client, user):
    start(user_client, "interior", generation_id="again")
    get_queue("generations").empty()
    start(user_client, "interior", generation_id="again")
    assert get_queue("generations").count == 1
    assert credits.get_user_credits(user.id).remaining == 5


def test_a_failed_enqueue_is_logged_not_raised(app, user, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr("rq.Queue.enqueue", refuse)
    enqueue_after_commit("maintenance", sweep_expired_reservations)
    db.session.commit()
    assert "could not enqueue sweep_expired_reservations" in caplog.text
