import math
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from credit_app.jobs.registry import get_queue
from credit_app.models import AuditLogEntry, Generation, GenerationStatus, WebhookEvent
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import get_redis
from credit_app.services import analytics, audit, credits, rollout
from tests.ledger_support import ledger_balance

TODAY = datetime.now(UTC).date()

# Each page's heading; the analytics panel is the htmx fragment the analytics page refreshes
# (no layout, no heading), so its own root element.
PAGE_HEADINGS = {
    "/admin/": "<h1>Users</h1>",
    "/admin/users/{user_id}": "<h1>{email}</h1>",
    "/admin/analytics": "<h1>Credit analytics</h1>",
    "/admin/analytics/panel": '<div id="analytics-panel" class="analytics-panel"',
    "/admin/audit": "<h1>Audit log</h1>",
    "/admin/webhooks": "<h1>Webhook events</h1>",
    "/admin/webhooks/{event_pk}": "<h1><code>{event_id}</code></h1>",
    "/admin/jobs": "<h1>Jobs and queues</h1>",
    "/admin/rollout": "<h1>Credit enforcement rollout</h1>",
}
GET_ROUTES = list(PAGE_HEADINGS)
POST_ROUTES = [
    ("/admin/users/{user_id}/credits", {"operation": "grant", "amount": "5", "reason": "x"}),
    ("/admin/webhooks/{event_pk}/rerun", {}),
    ("/admin/rollout", {"percentage": "10", "reason": "x"}),
]


@pytest.fixture
def webhook_event(user) -> WebhookEvent:
    event = WebhookEvent(
        event_id="evt_admin_test",
        event_type="checkout.completed",
        payload={
            "id": "evt_admin_test",
            "eventType": "checkout.completed",
            "object": {"metadata": {"user_id": str(user.id)}},
        },
        event_created_at=datetime.now(UTC),
        attempts=2,
        last_error="WebhookEventUnresolved: no user",
    )
    db.session.add(event)
    db.session.commit()
    return event


def urls(template: str, user, event) -> str:
    return template.format(user_id=user.id, event_pk=event.id)


@pytest.mark.parametrize("route", GET_ROUTES)
def test_every_page_is_admin_only(route, client, user_client, user, webhook_event):
    url = urls(route, user, webhook_event)
    assert user_client.get(url).status_code == 403
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


@pytest.mark.parametrize(("route", "form"), POST_ROUTES)
def test_every_action_is_admin_only_and_changes_nothing(
    route, form, client, user_client, user, webhook_event
):
    url = urls(route, user, webhook_event)
    assert user_client.post(url, data=form).status_code == 403
    assert client.post(url, data=form).status_code == 302
    assert credits.get_user_credits(user.id).remaining == 6
    assert rollout.percentage() == 100
    assert db.session.execute(select(func.count()).select_from(AuditLogEntry)).scalar_one() == 0


@pytest.mark.parametrize("route", GET_ROUTES)
def test_every_page_renders_for_admins(route, admin_client, user, webhook_event):
    response = admin_client.get(urls(route, user, webhook_event))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert PAGE_HEADINGS[route].format(email=user.email, event_id=webhook_event.event_id) in page
    assert page.count("<h1") == (0 if route == "/admin/analytics/panel" else 1)


def test_admin_lists_and_searches_users(admin_client, make_user):
    make_user("findme@example.com")
    page = admin_client.get("/admin/", query_string={"q": "FINDME"}).get_data(as_text=True)
    assert "findme@example.com" in page
    none = admin_client.get("/admin/", query_string={"q": "100%_nobody"}).get_data(as_text=True)
    assert "No users match" in none


def test_user_page_shows_plan_balance_ledger_and_generations(admin_client, user):
    reservation = credits.reserve_credit(user.id, "interior", "g-1")
    db.session.add(
        Generation(
            user_id=user.id,
            generation_id="g-1",
            reservation_id=reservation.id,
            feature="interior",
            input_path="/tmp/x.png",
            status=GenerationStatus.FAILED,
            error_message="The model timed out.",
        )
    )
    db.session.commit()
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Free" in page and "5/6 credits" in page
    assert "Welcome credits" in page and "<td>reserve</td>" in page
    assert "Redecorate a room" in page and "The model timed out." in page


def test_grant_uses_the_credit_service_and_is_audited(admin_client, admin, user):
    response = admin_client.post(
        f"/admin/users/{user.id}/credits",
        data={"operation": "grant", "amount": "5", "reason": "Beta tester"},
    )
    assert response.status_code == 302
    assert credits.get_user_credits(user.id).remaining == 11
    entry = audit.list_entries(target_user_id=user.id).items[0]
    assert (entry.action, entry.actor_id, entry.details["amount"], entry.details["reason"]) == (
        "credits.grant",
        admin.id,
        5,
        "Beta tester",
    )
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Beta tester" in page and "11/11" in page


def test_remove_takes_credits_off_with_a_reason(admin_client, admin, user):
    response = admin_client.post(
        f"/admin/users/{user.id}/credits",
        data={"operation": "remove", "amount": "4", "reason": "Duplicate grant"},
    )
    assert response.status_code == 302
    assert credits.get_user_credits(user.id).remaining == 2
    assert ledger_balance(user.id) == 2
    entry = audit.list_entries(target_user_id=user.id).items[0]
    assert (entry.action, entry.details["amount"]) == ("credits.remove", -4)


@pytest.mark.parametrize(
    "form",
    [
        {"operation": "grant", "amount": "0", "reason": "x"},
        {"operation": "grant", "amount": "-3", "reason": "x"},
        {"operation": "grant", "amount": "abc", "reason": "x"},
        {"operation": "grant", "amount": "100001", "reason": "x"},
        {"operation": "grant", "amount": "5", "reason": ""},
        {"operation": "grant", "amount": "5", "reason": "   "},
        {"operation": "steal", "amount": "5", "reason": "x"},
        {"operation": "remove", "amount": "7", "reason": "more than the balance"},
    ],
)
def test_bad_adjustments_are_refused_and_change_nothing(admin_client, user, form):
    response = admin_client.post(f"/admin/users/{user.id}/credits", data=form)
    assert response.status_code == 422
    assert credits.get_user_credits(user.id).remaining == 6
    assert audit.list_entries(target_user_id=user.id).items == []


def test_unknown_user_and_event(admin_client):
    assert admin_client.get("/admin/users/99999999").status_code == 404
    assert (
        admin_client.post(
            "/admin/users/99999999/credits", data={"amount": "1", "reason": "x"}
        ).status_code
        == 404
    )
    assert admin_client.get("/admin/webhooks/99999999").status_code == 404
    assert admin_client.post("/admin/webhooks/99999999/rerun").status_code == 404


def test_analytics_renders_with_an_empty_database(admin_client):
    page = admin_client.get("/admin/analytics").get_data(as_text=True)
    assert '<dd class="big-number">0</dd>' in page and "—" in page
    assert 'hx-trigger="every 30s"' in page
    assert page.count('class="chart-svg"') == 6 and page.count('<figure class="chart"') == 6


def test_analytics_renders_with_data_and_accessible_tables(admin_client, make_user):
    users = [make_user() for _ in range(3)]
    for number, user in enumerate(users):
        for _ in range(number + 1):
            credits.consume_credit(user.id, "video")
    analytics.track("upgrade_modal_shown", users[0].id)
    analytics.track("upgrade_clicked", users[0].id)
    db.session.commit()
    analytics.roll_up()
    credits.consume_credit(users[0].id, "sketch")
    db.session.commit()
    page = admin_client.get(
        "/admin/analytics",
        query_string={"start": (TODAY - timedelta(days=6)).isoformat(), "end": TODAY.isoformat()},
    ).get_data(as_text=True)
    assert "No activity" not in page
    assert "Generate a video" in page and "<rect" in page and "<polyline" in page
    assert "<caption" in page and 'scope="row"' in page
    # Six uses of video from the rollups, one sketch still raw: 7 generations in all.
    assert '<dd class="big-number">7</dd>' in page


def test_analytics_panel_is_the_htmx_fragment(admin_client):
    response = admin_client.get("/admin/analytics/panel", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert text.lstrip().startswith('<div id="analytics-panel"') and "<html" not in text


@pytest.mark.parametrize(
    "query",
    [
        {"start": "2026-13-01"},
        {"end": (TODAY + timedelta(days=1)).isoformat()},
        {"start": TODAY.isoformat(), "end": (TODAY - timedelta(days=3)).isoformat()},
        {"start": (TODAY - timedelta(days=400)).isoformat()},
    ],
)
def test_analytics_rejects_a_bad_range(admin_client, query):
    response = admin_client.get("/admin/analytics", query_string=query)
    assert response.status_code == 422
    assert 'role="alert"' in response.get_data(as_text=True)
    assert admin_client.get("/admin/analytics/panel", query_string=query).status_code == 422


def test_audit_log_lists_and_filters_admin_actions(admin_client, admin, user):
    credits.grant_credits(user.id, 2, "Support", actor_id=admin.id)
    rollout.set_percentage(50, admin.id, "Halfway")
    db.session.commit()
    page = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "credits.grant" in page and "rollout.change" in page and admin.email in page
    only = admin_client.get("/admin/audit", query_string={"action": "rollout.change"})
    assert "Halfway" in only.get_data(as_text=True)
    assert "Support" not in only.get_data(as_text=True)
    assert admin_client.get("/admin/audit", query_string={"action": "nope"}).status_code == 422
    assert admin_client.get("/admin/audit", query_string={"before": "x"}).status_code == 422


def test_audit_log_pages(admin_client, admin, user):
    for number in range(audit.PAGE_SIZE + 3):
        credits.grant_credits(user.id, 1, f"grant {number}", actor_id=admin.id)
    db.session.commit()
    first = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "grant 52" in first and "grant 2<" not in first and "Older entries" in first
    last_id = audit.list_entries().next_before
    older = admin_client.get("/admin/audit", query_string={"before": last_id})
    assert "grant 0" in older.get_data(as_text=True)


def test_webhook_events_list_detail_and_rerun(admin_client, admin, webhook_event):
    queue = get_queue("webhooks")
    queue.empty()
    listing = admin_client.get("/admin/webhooks", query_string={"status": "failed"})
    assert "evt_admin_test" in listing.get_data(as_text=True)
    assert "evt_admin_test" not in admin_client.get(
        "/admin/webhooks", query_string={"status": "processed"}
    ).get_data(as_text=True)
    assert admin_client.get("/admin/webhooks", query_string={"status": "weird"}).status_code == 422
    detail = admin_client.get(f"/admin/webhooks/{webhook_event.id}").get_data(as_text=True)
    assert "checkout.completed" in detail and "no user" in detail and "&#34;object&#34;" in detail
    response = admin_client.post(f"/admin/webhooks/{webhook_event.id}/rerun")
    assert response.status_code == 302
    assert [job.args for job in queue.jobs] == [("evt_admin_test",)]
    entry = audit.list_entries(action="webhook.rerun").items[0]
    assert (entry.actor_id, entry.target, entry.details["previous"]["attempts"]) == (
        admin.id,
        "evt_admin_test",
        2,
    )
    queue.empty()


def test_jobs_page_shows_queues_failed_jobs_and_failed_generations(admin_client, user):
    reservation = credits.reserve_credit(user.id, "remove", "g-fail")
    db.session.add(
        Generation(
            user_id=user.id,
            generation_id="g-fail",
            reservation_id=reservation.id,
            feature="remove",
            input_path="/tmp/in.png",
            status=GenerationStatus.FAILED,
            error_message="The provider crashed.",
            finished_at=datetime.now(UTC),
        )
    )
    db.session.commit()
    queue = Queue("generations", connection=get_redis())
    job = queue.enqueue(math.sqrt, -1)
    SimpleWorker([queue], connection=get_redis()).work(burst=True)
    try:
        page = admin_client.get("/admin/jobs").get_data(as_text=True)
    finally:
        queue.failed_job_registry.remove(job, delete_job=True)
    for name in ("webhooks", "generations", "analytics", "default"):
        assert f'<th scope="row">{name}</th>' in page
    assert job.id in page and "ValueError" in page
    assert "The provider crashed." in page and f">{user.email}</a>" in page


def test_rollout_page_changes_the_percentage_and_audits(admin_client, admin, user):
    response = admin_client.post(
        "/admin/rollout", data={"percentage": "10", "reason": "The spec's 10 % step"}
    )
    assert response.status_code == 302
    assert rollout.percentage() == 10
    page = admin_client.get("/admin/rollout").get_data(as_text=True)
    assert "<strong>10%</strong>" in page and "The spec&#39;s 10 % step" in page
    entry = audit.list_entries(action="rollout.change").items[0]
    assert entry.details == {"from": 100, "to": 10, "reason": "The spec's 10 % step"}


@pytest.mark.parametrize(
    "form",
    [
        {"percentage": "101", "reason": "x"},
        {"percentage": "-1", "reason": "x"},
        {"percentage": "ten", "reason": "x"},
        {"percentage": "", "reason": "x"},
        {"percentage": "10", "reason": ""},
    ],
)
def test_rollout_rejects_bad_input(admin_client, form):
    assert admin_client.post("/admin/rollout", data=form).status_code == 422
    assert rollout.percentage() == 100
    assert audit.list_entries(action="rollout.change").items == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (20.4, "20 s"),
        (240, "4 min"),
        (3 * 3600 + 12 * 60, "3 h 12 min"),
        (2 * 86_400 + 5 * 3600 + 59, "2 d 5 h"),
    ],
)
def test_durations_for_people(seconds, text):
    from credit_app.web.blueprints.admin import admin_duration

    assert admin_duration(seconds) == text
