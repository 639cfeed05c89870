from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from credit_app.errors import InsufficientCredits, ValidationFailed
from credit_app.jobs.analytics import roll_up_analytics
from credit_app.models import (
    AnalyticsActiveDay,
    AnalyticsDailyActiveUsers,
    AnalyticsDailyRollup,
    AnalyticsEvent,
    AnalyticsUserFunnel,
    CreditTransaction,
)
from credit_app.platform.extensions import db
from credit_app.platform.redis_client import make_client
from credit_app.services import analytics, credits
from tests.ledger_support import ledger_balance


def events_of(user_id: int) -> list[AnalyticsEvent]:
    return list(
        db.session.execute(
            select(AnalyticsEvent)
            .where(AnalyticsEvent.user_id == user_id)
            .order_by(AnalyticsEvent.id)
        ).scalars()
    )


def types_of(user_id: int) -> list[str]:
    return [event.event_type for event in events_of(user_id)]


def rollups() -> dict[tuple, tuple[int, int]]:
    return {
        (row.day, row.event_type, row.feature, row.plan): (row.events, row.credits)
        for row in db.session.execute(select(AnalyticsDailyRollup)).scalars()
    }


def test_sign_up_writes_a_credit_granted_event_with_its_ledger_row(user):
    [event] = events_of(user.id)
    grant = db.session.execute(
        select(CreditTransaction).where(CreditTransaction.user_id == user.id)
    ).scalar_one()
    assert (event.event_type, event.credits, event.transaction_id) == (
        "credit_granted",
        6,
        grant.id,
    )
    assert event.properties == {"source": "registration"}
    assert event.rolled_up_at is None


def test_spending_to_zero_writes_consumed_and_depleted(user):
    for _ in range(5):
        credits.consume_credit(user.id, "interior")
    reservation = credits.reserve_credit(user.id, "video", "last-one")
    assert types_of(user.id)[-1] == "credit_depleted"
    credits.commit_reservation(reservation.id)
    events = events_of(user.id)
    assert [event.event_type for event in events] == (
        ["credit_granted"] + ["credit_consumed"] * 5 + ["credit_depleted", "credit_consumed"]
    )
    last = events[-1]
    assert (last.feature, last.plan, last.credits, last.credits_remaining) == (
        "video",
        "free",
        1,
        0,
    )
    assert last.properties == {"via": "reservation"}


def test_released_holds_write_no_use(user):
    reservation = credits.reserve_credit(user.id, "sketch", "fails")
    credits.release_reservation(reservation.id)
    assert types_of(user.id) == ["credit_granted"]


def test_pro_uses_are_recorded_at_no_charge_and_never_deplete(make_user):
    pro = make_user(plan="pro")
    credits.consume_credit(pro.id, "video")
    event = events_of(pro.id)[-1]
    assert (event.event_type, event.plan, event.credits) == ("credit_consumed", "pro", 0)
    assert "enforced" not in event.properties


def test_plan_changes_write_upgraded_and_canceled(user, admin):
    credits.change_plan(user.id, "pro", "Pro started", actor_id=admin.id)
    credits.change_plan(user.id, "free", "Back to free")
    upgraded, canceled = events_of(user.id)[-2:]
    assert (upgraded.event_type, upgraded.properties) == (
        "subscription_upgraded",
        {"from": "free", "to": "pro"},
    )
    assert (canceled.event_type, canceled.plan) == ("subscription_canceled", "free")


def test_rolled_back_ledger_changes_leave_no_event(user):
    db.session.commit()
    before = types_of(user.id)
    credits.consume_credit(user.id, "interior")
    credits.grant_credits(user.id, 3, "gift")
    assert len(types_of(user.id)) == len(before) + 2
    db.session.rollback()
    assert types_of(user.id) == before
    assert ledger_balance(user.id) == 6


def test_refused_spends_write_no_event(user):
    user.credits_remaining = 0
    db.session.execute(
        text("UPDATE credit_transactions SET amount = 0, balance_after = 0 WHERE user_id = :id"),
        {"id": user.id},
    )
    db.session.execute(
        text(
            "UPDATE credit_lot_movements SET amount = 0 WHERE lot_id IN "
            "(SELECT id FROM credit_lots WHERE user_id = :id)"
        ),
        {"id": user.id},
    )
    db.session.execute(
        text("UPDATE credit_lots SET remaining = 0 WHERE user_id = :id"), {"id": user.id}
    )
    db.session.commit()
    with pytest.raises(InsufficientCredits):
        credits.consume_credit(user.id, "interior")
    db.session.rollback()
    assert types_of(user.id) == ["credit_granted"]


def test_events_are_kept_when_redis_is_down(app, user):
    working = app.extensions["redis"]
    app.extensions["redis"] = make_client("unix:///nonexistent/redis.sock", "monitoring")
    try:
        credits.consume_credit(user.id, "remove")
        analytics.track("upgrade_clicked", user.id)
        db.session.commit()
    finally:
        app.extensions["redis"] = working
    assert types_of(user.id) == ["credit_granted", "credit_consumed", "upgrade_clicked"]


def test_track_writes_in_the_callers_transaction(user):
    event_id = analytics.track("upgrade_modal_shown", user.id, feature="video", credits_remaining=0)
    stored = db.session.execute(
        select(AnalyticsEvent).where(AnalyticsEvent.event_id == event_id)
    ).scalar_one()
    assert (stored.user_id, stored.feature, stored.credits_remaining, stored.plan) == (
        user.id,
        "video",
        0,
        "free",
    )
    db.session.rollback()
    assert (
        db.session.execute(
            select(AnalyticsEvent).where(AnalyticsEvent.event_id == event_id)
        ).scalar_one_or_none()
        is None
    )


def test_unknown_event_type():
    with pytest.raises(ValidationFailed):
        analytics.track("page_view", None)


def test_modal_outcomes_are_recorded(user_client, user):
    assert (
        user_client.post(
            "/dashboard/upgrade-modal/dismissed", data={"feature": "video"}
        ).status_code
        == 204
    )
    user_client.get("/dashboard/subscription?feature=video&source=upgrade_modal")
    events = events_of(user.id)[-2:]
    assert [(event.event_type, event.feature) for event in events] == [
        ("upgrade_modal_dismissed", "video"),
        ("upgrade_clicked", "video"),
    ]


def test_modal_on_demand(user_client, user):
    response = user_client.get(
        "/dashboard/upgrade-modal?feature=sketch", headers={"HX-Request": "true"}
    )
    assert 'role="dialog"' in response.get_data(as_text=True)
    assert types_of(user.id)[-1] == "upgrade_modal_shown"


def test_events_carry_no_personal_data(user):
    credits.consume_credit(user.id, "interior")
    analytics.track("upgrade_clicked", user.id)
    for event in events_of(user.id):
        row = {column: getattr(event, column.key) for column in AnalyticsEvent.__table__.c}
        assert user.email not in repr(row)


# Roll-ups


def test_roll_up_folds_each_event_once(user, make_user):
    other = make_user(plan="pro")
    credits.consume_credit(user.id, "interior")
    credits.consume_credit(user.id, "interior")
    credits.consume_credit(other.id, "video")
    db.session.commit()
    folded = analytics.roll_up()
    assert folded >= 5
    first = rollups()
    today = datetime.now(UTC).date()
    assert first[(today, "credit_consumed", "interior", "free")] == (2, 2)
    assert first[(today, "credit_consumed", "video", "pro")] == (1, 0)
    assert analytics.roll_up() == 0
    assert rollups() == first
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(AnalyticsEvent)
            .where(AnalyticsEvent.rolled_up_at.is_(None))
        )
        == 0
    )


def test_roll_up_is_safe_across_batches_and_reruns(user):
    for _ in range(4):
        credits.consume_credit(user.id, "sketch")
    while analytics.roll_up(batch_size=2):
        pass
    once = rollups()
    assert analytics.roll_up(batch_size=2) == 0
    assert rollups() == once
    today = datetime.now(UTC).date()
    assert once[(today, "credit_consumed", "sketch", "free")][0] >= 4


def test_roll_up_builds_active_days_and_funnels(user):
    now = datetime.now(UTC)
    analytics.track("upgrade_modal_shown", user.id, occurred_at=now - timedelta(hours=3))
    analytics.track("upgrade_modal_shown", user.id, occurred_at=now - timedelta(hours=5))
    analytics.track("upgrade_clicked", user.id, occurred_at=now - timedelta(hours=2))
    credits.consume_credit(user.id, "furnish")
    analytics.roll_up()
    funnel = db.session.get(AnalyticsUserFunnel, user.id)
    assert funnel.first_modal_shown_at == now - timedelta(hours=5)
    assert funnel.first_upgrade_clicked_at == now - timedelta(hours=2)
    assert funnel.signed_up_at == user.created_at
    assert funnel.last_active_at is not None
    active = (
        db.session.execute(select(AnalyticsActiveDay).where(AnalyticsActiveDay.user_id == user.id))
        .scalars()
        .all()
    )
    assert [(day.day, day.plan) for day in active] == [(now.date(), "free")]
    counted = db.session.get(AnalyticsDailyActiveUsers, (now.date(), "free"))
    assert counted.users >= 1
    before = counted.users
    credits.consume_credit(user.id, "video")
    analytics.roll_up()
    db.session.refresh(counted)
    assert counted.users == before
    # An earlier event arriving late moves the first time back; a later one does not.
    analytics.track("upgrade_modal_shown", user.id, occurred_at=now - timedelta(days=1))
    analytics.track("upgrade_modal_shown", user.id, occurred_at=now)
    analytics.roll_up()
    db.session.refresh(funnel)
    assert funnel.first_modal_shown_at == now - timedelta(days=1)


def test_roll_up_rejects_a_bad_batch_size():
    with pytest.raises(ValidationFailed):
        analytics.roll_up(batch_size=0)


def test_purge_deletes_only_rolled_up_events_past_retention(user):
    old = datetime.now(UTC) - timedelta(days=100)
    analytics.track("upgrade_clicked", user.id, occurred_at=old)
    pending_old = analytics.track("upgrade_modal_shown", user.id, occurred_at=old)
    analytics.roll_up()
    analytics.track("upgrade_modal_dismissed", user.id, occurred_at=old)
    db.session.execute(
        text("UPDATE analytics_events SET rolled_up_at = NULL WHERE event_id = :id"),
        {"id": pending_old},
    )
    before = rollups()
    assert analytics.purge_rolled_up_events(90) == 1
    remaining = {
        event.event_type
        for event in events_of(user.id)
        if event.occurred_at < datetime.now(UTC) - timedelta(days=90)
    }
    assert remaining == {"upgrade_modal_shown", "upgrade_modal_dismissed"}
    assert rollups() == before
    assert analytics.purge_rolled_up_events(90) == 0
    with pytest.raises(ValidationFailed):
        analytics.purge_rolled_up_events(0)


def test_the_job_folds_and_purges_and_runs_twice(app, user):
    analytics.track("upgrade_clicked", user.id, occurred_at=datetime.now(UTC) - timedelta(days=400))
    credits.consume_credit(user.id, "interior")
    db.session.commit()
    first = roll_up_analytics(batch_size=1)
    assert first["folded"] >= 3 and first["purged"] == 1
    assert roll_up_analytics() == {"folded": 0, "purged": 0}
    day = (datetime.now(UTC) - timedelta(days=400)).date()
    assert rollups()[(day, "upgrade_clicked", "", "free")] == (1, 0)


def test_anonymise_detaches_events_and_keeps_rollups(user):
    credits.consume_credit(user.id, "interior")
    analytics.roll_up()
    before = rollups()
    analytics.track("upgrade_clicked", user.id, properties={"from": "sidebar"})
    ids = [event.id for event in events_of(user.id)]
    assert analytics.anonymise_user_events(user.id) == 3
    assert events_of(user.id) == []
    scrubbed = db.session.execute(
        select(AnalyticsEvent.user_id, AnalyticsEvent.properties).where(AnalyticsEvent.id.in_(ids))
    ).all()
    assert scrubbed == [(None, {})] * 3
    assert rollups() == before


def test_failed_and_abandoned_generations_are_recorded(user):
    from credit_app.models import Generation
    from credit_app.services import generations

    first = credits.reserve_credit(user.id, "video", "g-fail")
    late = credits.reserve_credit(user.id, "remove", "g-late", timeout=timedelta(seconds=-1))
    for reservation in (first, late):
        db.session.add(
            Generation(
                user_id=user.id,
                generation_id=reservation.generation_id,
                reservation_id=reservation.id,
                feature=reservation.feature,
                input_path="/tmp/in.png",
            )
        )
    db.session.flush()
    failed = db.session.execute(
        select(Generation).where(Generation.generation_id == "g-fail")
    ).scalar_one()
    generations.fail_generation(failed.id, "The model crashed.")
    credits.expire_overdue_reservations()
    generations.fail_abandoned_generations()
    recorded = [
        (event.feature, event.properties)
        for event in events_of(user.id)
        if event.event_type == "generation_failed"
    ]
    assert recorded == [("video", {}), ("remove", {"reason": "timeout"})]
