import pytest
from sqlalchemy import select

from credit_app.errors import ValidationFailed
from credit_app.extensions import db
from credit_app.jobs.analytics import record_event
from credit_app.models import AnalyticsEvent
from credit_app.redis_client import get_queue
from credit_app.services import analytics


def test_events_are_queued_after_commit_and_stored_once(user):
    queue = get_queue("analytics")
    queue.empty()
    event_id = analytics.track("upgrade_modal_shown", user.id, feature="video",
                               credits_remaining=0)
    assert queue.count == 0
    db.session.commit()
    assert queue.count == 1
    job = queue.jobs[0]
    assert job.args[0] == event_id and job.args[1] == "upgrade_modal_shown"
    assert record_event(*job.args) is True
    assert record_event(*job.args) is False
    stored = db.session.execute(select(AnalyticsEvent).where(AnalyticsEvent.event_id == event_id)
                                ).scalar_one()
    assert (stored.user_id, stored.feature, stored.credits_remaining) == (user.id, "video", 0)
    queue.empty()


def test_rolled_back_events_are_never_queued(user):
    queue = get_queue("analytics")
    queue.empty()
    analytics.track("upgrade_clicked", user.id)
    db.session.rollback()
    db.session.commit()
    assert queue.count == 0


def test_unknown_event_type():
    with pytest.raises(ValidationFailed):
        analytics.track("page_view", None)


def test_modal_outcomes_are_recorded(user_client, user):
    queue = get_queue("analytics")
    queue.empty()
    assert user_client.post("/dashboard/upgrade-modal/dismissed",
                            data={"feature": "video"}).status_code == 204
    user_client.get("/dashboard/subscription?feature=video&source=upgrade_modal")
    assert [job.args[1] for job in queue.jobs] == ["upgrade_modal_dismissed", "upgrade_clicked"]
    assert all(job.args[3] == "video" for job in queue.jobs)
    queue.empty()


def test_modal_on_demand(user_client):
    response = user_client.get("/dashboard/upgrade-modal?feature=sketch",
                               headers={"HX-Request": "true"})
    assert 'role="dialog"' in response.get_data(as_text=True)
    get_queue("analytics").empty()
