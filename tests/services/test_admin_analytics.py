"""The dashboard's formulas on a hand-built data set whose answers are worked out by hand."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import insert

from credit_app.errors import ValidationFailed
from credit_app.models import (
    AnalyticsActiveDay,
    AnalyticsDailyActiveUsers,
    AnalyticsDailyRollup,
    AnalyticsEvent,
    AnalyticsUserFunnel,
)
from credit_app.platform.extensions import db
from credit_app.services import admin_analytics
from credit_app.services.admin_analytics import DateRange, build_dashboard, parse_range
from credit_app.services.analytics import new_event_id

TODAY = datetime.now(UTC).date()
D0 = TODAY - timedelta(days=40)
T = datetime.combine(D0, time.min, tzinfo=UTC)
RANGE = DateRange(D0, D0 + timedelta(days=2))


def rollup(
    day: date, event_type: str, feature: str, plan: str, events: int, credits: int = 0
) -> dict:
    return {
        "day": day,
        "event_type": event_type,
        "feature": feature,
        "plan": plan,
        "events": events,
        "credits": credits,
    }


def raw(
    event_type: str,
    at: datetime,
    user_id: int | None = None,
    feature: str | None = None,
    plan: str | None = "free",
    credits: int | None = None,
    rolled_up: bool = False,
) -> dict:
    return {
        "event_id": new_event_id(),
        "event_type": event_type,
        "occurred_at": at,
        "user_id": user_id,
        "feature": feature,
        "plan": plan,
        "credits": credits,
        "properties": {},
        "rolled_up_at": at if rolled_up else None,
    }


@pytest.fixture
def data_set(make_user):
    a, b, c, d, e = (make_user() for _ in range(5))
    c.subscription_status = "pro"
    e.created_at = T - timedelta(days=1)
    day1, day2 = D0 + timedelta(days=1), D0 + timedelta(days=2)
    db.session.execute(
        insert(AnalyticsDailyRollup),
        [
            rollup(D0, "credit_consumed", "interior", "free", 4, 4),
            rollup(D0, "credit_consumed", "video", "pro", 2, 0),
            rollup(day1, "credit_consumed", "interior", "free", 2, 1),
            rollup(D0, "credit_granted", "", "free", 3, 18),
            rollup(D0, "generation_failed", "interior", "free", 1),
            rollup(day1, "upgrade_modal_shown", "", "free", 2),
            rollup(day1, "upgrade_modal_dismissed", "", "free", 1),
            rollup(day1, "upgrade_clicked", "", "free", 1),
            rollup(day2, "subscription_upgraded", "", "pro", 1),
            rollup(D0 - timedelta(days=1), "credit_consumed", "interior", "free", 100, 100),
        ],
    )
    day2_noon = datetime.combine(day2, time(12), tzinfo=UTC)
    db.session.execute(
        insert(AnalyticsEvent),
        [
            # Not rolled up yet: counted from the raw table.
            raw("credit_consumed", day2_noon, a.id, "exterior", credits=1),
            raw("credit_consumed", day2_noon, b.id, "exterior", credits=1),
            raw("generation_failed", day2_noon, a.id, "exterior"),
            raw("credit_granted", day2_noon, a.id, credits=6),
            raw("upgrade_modal_shown", T + timedelta(days=1, hours=1), c.id, plan="pro"),
            raw("upgrade_clicked", T + timedelta(days=1, hours=2), c.id, plan="pro"),
            raw("credit_depleted", T + timedelta(days=2, hours=1), e.id, "interior"),
            # Already in the rollups: must not count twice.
            raw(
                "credit_consumed",
                T + timedelta(hours=1),
                a.id,
                "interior",
                credits=1,
                rolled_up=True,
            ),
            # Outside the range.
            raw("credit_consumed", T + timedelta(days=3), a.id, "interior", credits=1),
        ],
    )
    db.session.execute(
        insert(AnalyticsActiveDay),
        [
            {"day": D0, "plan": "free", "user_id": a.id},
            {"day": D0, "plan": "free", "user_id": b.id},
            {"day": D0, "plan": "pro", "user_id": c.id},
            {"day": day1, "plan": "free", "user_id": a.id},
            {"day": D0 - timedelta(days=1), "plan": "free", "user_id": d.id},
        ],
    )
    db.session.execute(
        insert(AnalyticsDailyActiveUsers),
        [
            {"day": D0, "plan": "free", "users": 2},
            {"day": D0, "plan": "pro", "users": 1},
            {"day": day1, "plan": "free", "users": 1},
            {"day": D0 - timedelta(days=1), "plan": "free", "users": 1},
        ],
    )
    db.session.execute(
        insert(AnalyticsUserFunnel),
        [
            {
                "user_id": a.id,
                "signed_up_at": T,
                "first_depleted_at": T + timedelta(hours=2),
                "first_modal_shown_at": T + timedelta(hours=2),
                "first_upgrade_clicked_at": T + timedelta(hours=3),
                "first_upgraded_at": T + timedelta(days=5),
            },
            {
                "user_id": b.id,
                "signed_up_at": T,
                "first_depleted_at": T + timedelta(hours=10),
                "first_modal_shown_at": T + timedelta(hours=10),
                "first_upgraded_at": T + timedelta(days=20),
            },
            {"user_id": c.id, "signed_up_at": T, "first_depleted_at": T + timedelta(days=1)},
            {
                "user_id": d.id,
                "signed_up_at": T - timedelta(days=9),
                "first_depleted_at": T - timedelta(days=5),
                "first_modal_shown_at": T - timedelta(days=5),
                "first_upgraded_at": T + timedelta(days=1),
            },
        ],
    )
    db.session.commit()
    return a, b, c, d, e


def test_counts_utilisation_and_failure_rate(data_set):
    dashboard = build_dashboard(RANGE)
    assert dashboard.uses == 4 + 2 + 2 + 2
    assert dashboard.credits_charged == 4 + 0 + 1 + 2
    assert dashboard.credits_granted == 18 + 6
    assert dashboard.utilisation == pytest.approx(7 / 24)
    assert dashboard.credits_waived == 1
    assert (dashboard.failed, dashboard.generations) == (2, 12)
    assert dashboard.failure_rate == pytest.approx(2 / 12)
    assert (dashboard.modal_shown, dashboard.modal_dismissed, dashboard.upgrade_clicked) == (
        2 + 1,
        1,
        1 + 1,
    )
    assert (dashboard.upgrades, dashboard.cancellations) == (1, 0)


def test_feature_distribution(data_set):
    rows = {row.feature: row for row in build_dashboard(RANGE).features}
    assert (rows["interior"].uses, rows["interior"].free_uses) == (6, 6)
    assert (rows["video"].uses, rows["video"].pro_uses) == (2, 2)
    assert rows["exterior"].uses == 2
    assert rows["interior"].share == pytest.approx(0.6)
    assert rows["sketch"].uses == 0 and rows["sketch"].share == 0


def test_per_day_series(data_set):
    days = {row.day: row for row in build_dashboard(RANGE).days}
    assert list(days) == [D0, D0 + timedelta(days=1), D0 + timedelta(days=2)]
    first, second, third = days.values()
    assert (first.uses, first.failed, first.failure_rate) == (6, 1, pytest.approx(1 / 7))
    assert (second.uses, second.modal_shown, second.modal_dismissed, second.upgrade_clicked) == (
        2,
        2 + 1,
        1,
        1 + 1,
    )
    assert (third.uses, third.failed, third.upgrades) == (2, 1, 1)
    assert (first.active_free, first.active_pro) == (2, 1)
    assert (second.active_free, third.active_free) == (1, 2)


def test_active_users_are_distinct_over_the_range(data_set):
    dashboard = build_dashboard(RANGE)
    assert (dashboard.active_free, dashboard.active_pro) == (2, 1)


def test_time_to_depletion_and_conversion(data_set):
    dashboard = build_dashboard(RANGE)
    # A 2 h, B 10 h, C 1 d, E 3 d 1 h (E only from a raw event and its sign-up time).
    assert dashboard.depleted_users == 4
    assert dashboard.depletion_p50_seconds == pytest.approx((36_000 + 86_400) / 2)
    assert dashboard.depletion_p90_seconds == pytest.approx(86_400 + 0.7 * (262_800 - 86_400))
    assert dashboard.converted == {7: 1, 30: 2}
    assert dashboard.conversion_rate(7) == pytest.approx(0.25)
    assert dashboard.conversion_rate(30) == pytest.approx(0.5)


def test_upgrade_funnel(data_set):
    dashboard = build_dashboard(RANGE)
    # Shown in range: A, B (stored) and C (raw); clicked after: A, C; paid after: A.
    assert (
        dashboard.funnel_modal_users,
        dashboard.funnel_clicked_users,
        dashboard.funnel_paid_users,
    ) == (3, 2, 1)
    assert dashboard.click_through_rate == pytest.approx(2 / 3)
    assert dashboard.paid_rate == pytest.approx(1 / 3)


def test_an_empty_database_gives_zeros_not_errors():
    dashboard = build_dashboard(RANGE)
    assert dashboard.is_empty
    assert (
        dashboard.utilisation,
        dashboard.failure_rate,
        dashboard.depletion_p50_seconds,
        dashboard.conversion_rate(7),
        dashboard.click_through_rate,
    ) == (None,) * 5
    assert len(dashboard.days) == 3


def test_parse_range_defaults_to_the_last_30_days():
    parsed = parse_range(None, None, today=date(2026, 3, 31))
    assert (parsed.start, parsed.end) == (date(2026, 3, 2), date(2026, 3, 31))
    assert len(parsed.days) == 30
    assert parsed.end_at == datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("2026-02-30", None, "start"),
        ("yesterday", None, "start"),
        (None, "2026-04-01", "end"),
        ("2026-03-10", "2026-03-01", "start"),
        ("2025-01-01", "2026-03-01", "start"),
    ],
)
def test_parse_range_rejects_bad_input(start, end, field):
    with pytest.raises(ValidationFailed) as caught:
        parse_range(start, end, today=date(2026, 3, 31))
    assert caught.value.details["field"] == field


def test_ratio():
    assert admin_analytics.ratio(1, 4) == 0.25
    assert admin_analytics.ratio(3, 0) is None
