"""The numbers of the admin analytics dashboard, for a range of UTC days.

Every query reads the rollups (analytics_daily_rollups, analytics_active_days,
analytics_daily_active_users, analytics_user_funnels) plus the raw events not rolled up yet
(`rolled_up_at IS NULL`, a partial index: normally the last minute or so), so each event
counts exactly once and the page is live without scanning the raw history. Definitions:

- utilisation: credits charged for uses ÷ credits granted (sign-up and admin grants);
- credits waived: what free users' uses would have cost but did not, because they were
  outside the enforcement rollout;
- feature distribution: uses (credit_consumed) per feature, Pro included;
- generations per day: uses + failed generations; failure rate = failed ÷ generations;
- time to depletion: sign-up → first time a free balance reached 0, for users whose first
  depletion falls in the range (median and 90th percentile);
- conversion: of those users, the share whose first upgrade came within 7 / 30 days after;
- funnel: users whose first upgrade modal falls in the range → of them, who clicked upgrade
  after it → of them, who upgraded after the click;
- active users: distinct users with at least one use in the range, by the plan they used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, text

from credit_app.errors import ValidationFailed
from credit_app.generation.features import FEATURES
from credit_app.models import User
from credit_app.platform.extensions import db

DEFAULT_DAYS = 30
MAX_DAYS = 366

COUNTS_SQL = text("""
SELECT day, event_type, feature, plan, sum(events)::bigint AS events,
       sum(credits)::bigint AS credits
FROM (
    SELECT day, event_type, feature, plan, events, credits
    FROM analytics_daily_rollups
    WHERE day BETWEEN :start AND :end
    UNION ALL
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, event_type, coalesce(feature, ''),
           coalesce(plan, ''), count(*), coalesce(sum(credits), 0)
    FROM analytics_events
    WHERE rolled_up_at IS NULL AND occurred_at >= :start_at AND occurred_at < :end_at
    GROUP BY 1, 2, 3, 4
) AS counts
GROUP BY 1, 2, 3, 4
""")

# Uses not rolled up yet, one row per (day, plan, user), minus those already in the rollups.
_FRESH_ACTIVE = """
    SELECT DISTINCT (e.occurred_at AT TIME ZONE 'UTC')::date AS day,
           coalesce(e.plan, '') AS plan, e.user_id
    FROM analytics_events AS e
    WHERE e.rolled_up_at IS NULL AND e.event_type = 'credit_consumed'
      AND e.user_id IS NOT NULL AND e.occurred_at >= :start_at AND e.occurred_at < :end_at
"""

DAILY_ACTIVE_SQL = text(f"""
SELECT day, plan, sum(users)::bigint AS users
FROM (
    SELECT day, plan, users FROM analytics_daily_active_users
    WHERE day BETWEEN :start AND :end
    UNION ALL
    SELECT fresh.day, fresh.plan, count(*)
    FROM ({_FRESH_ACTIVE}) AS fresh
    WHERE NOT EXISTS (SELECT 1 FROM analytics_active_days AS a
                      WHERE a.day = fresh.day AND a.plan = fresh.plan
                        AND a.user_id = fresh.user_id)
    GROUP BY fresh.day, fresh.plan
) AS daily
GROUP BY day, plan
""")

RANGE_ACTIVE_SQL = text(f"""
SELECT plan, count(*) AS users
FROM (
    SELECT plan, user_id FROM analytics_active_days
    WHERE day BETWEEN :start AND :end
    GROUP BY plan, user_id
    UNION ALL
    SELECT DISTINCT fresh.plan, fresh.user_id
    FROM ({_FRESH_ACTIVE}) AS fresh
    WHERE NOT EXISTS (SELECT 1 FROM analytics_active_days AS a
                      WHERE a.user_id = fresh.user_id AND a.plan = fresh.plan
                        AND a.day BETWEEN :start AND :end)
) AS active
GROUP BY plan
""")

FUNNEL_SQL = text("""
WITH pending AS (
    SELECT user_id,
           min(occurred_at) FILTER (WHERE event_type = 'credit_depleted') AS depleted,
           min(occurred_at) FILTER (WHERE event_type = 'upgrade_modal_shown') AS shown,
           min(occurred_at) FILTER (WHERE event_type = 'upgrade_clicked') AS clicked,
           min(occurred_at) FILTER (WHERE event_type = 'subscription_upgraded') AS upgraded
    FROM analytics_events
    WHERE rolled_up_at IS NULL AND user_id IS NOT NULL
    GROUP BY user_id
    HAVING count(*) FILTER (WHERE event_type IN ('credit_depleted', 'upgrade_modal_shown',
                                                 'upgrade_clicked', 'subscription_upgraded')) > 0
), stored AS (
    SELECT * FROM analytics_user_funnels
    WHERE (first_depleted_at >= :start_at AND first_depleted_at < :end_at)
       OR (first_modal_shown_at >= :start_at AND first_modal_shown_at < :end_at)
       OR user_id IN (SELECT user_id FROM pending)
), merged AS (
    SELECT coalesce(s.signed_up_at, u.created_at) AS signed_up_at,
           least(s.first_depleted_at, p.depleted) AS depleted,
           least(s.first_modal_shown_at, p.shown) AS shown,
           least(s.first_upgrade_clicked_at, p.clicked) AS clicked,
           least(s.first_upgraded_at, p.upgraded) AS upgraded
    FROM stored AS s
    FULL JOIN pending AS p ON p.user_id = s.user_id
    LEFT JOIN users AS u ON u.id = p.user_id
), ranged AS (
    SELECT *,
           depleted >= :start_at AND depleted < :end_at AS depleted_in_range,
           shown >= :start_at AND shown < :end_at AS shown_in_range,
           extract(epoch FROM depleted - signed_up_at) AS depletion_seconds
    FROM merged
)
SELECT
    count(*) FILTER (WHERE depleted_in_range) AS depleted_users,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY depletion_seconds)
        FILTER (WHERE depleted_in_range) AS depletion_p50,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY depletion_seconds)
        FILTER (WHERE depleted_in_range) AS depletion_p90,
    count(*) FILTER (WHERE depleted_in_range AND upgraded >= depleted
                     AND upgraded <= depleted + interval '7 days') AS converted_7,
    count(*) FILTER (WHERE depleted_in_range AND upgraded >= depleted
                     AND upgraded <= depleted + interval '30 days') AS converted_30,
    count(*) FILTER (WHERE shown_in_range) AS modal_users,
    count(*) FILTER (WHERE shown_in_range AND clicked >= shown) AS clicked_users,
    count(*) FILTER (WHERE shown_in_range AND clicked >= shown AND upgraded >= clicked)
        AS paid_users
FROM ranged
""")


@dataclass(frozen=True)
class DateRange:
    """UTC days from `start` to `end`, both included."""

    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def params(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "start_at": self.start_at,
            "end_at": self.end_at,
        }


def _parse_day(value: str, field_name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"Enter the {field_name} date as YYYY-MM-DD.", field=field_name
        ) from None


def parse_range(start: str | None, end: str | None, today: date | None = None) -> DateRange:
    """The range an admin asked for; the last 30 days by default.

    Raises ValidationFailed for a malformed date, an end in the future, a start after the
    end, or more than 366 days.
    """
    today = today or datetime.now(UTC).date()
    end_day = _parse_day(end, "end") if end else today
    start_day = _parse_day(start, "start") if start else end_day - timedelta(days=DEFAULT_DAYS - 1)
    if end_day > today:
        raise ValidationFailed("The end date cannot be in the future.", field="end")
    if start_day > end_day:
        raise ValidationFailed("The start date must not be after the end date.", field="start")
    if (end_day - start_day).days + 1 > MAX_DAYS:
        raise ValidationFailed(f"Choose at most {MAX_DAYS} days.", field="start")
    return DateRange(start_day, end_day)


def ratio(part: float, whole: float) -> float | None:
    """part ÷ whole, or None when there is nothing to divide by."""
    return part / whole if whole else None


class GenerationOutcomes:
    """The generation counts of a day or a range: `uses` ran, `failed` did not."""

    uses: int
    failed: int

    @property
    def generations(self) -> int:
        return self.uses + self.failed

    @property
    def failure_rate(self) -> float | None:
        return ratio(self.failed, self.generations)


@dataclass(frozen=True)
class DayRow(GenerationOutcomes):
    day: date
    uses: int
    failed: int
    modal_shown: int
    modal_dismissed: int
    upgrade_clicked: int
    upgrades: int
    cancellations: int
    active_free: int
    active_pro: int


@dataclass(frozen=True)
class FeatureRow:
    feature: str
    title: str
    uses: int
    free_uses: int
    pro_uses: int
    share: float | None


@dataclass(frozen=True)
class Dashboard(GenerationOutcomes):
    range: DateRange
    credits_charged: int
    credits_granted: int
    uses: int
    credits_waived: int
    failed: int
    features: list[FeatureRow]
    days: list[DayRow]
    active_free: int
    active_pro: int
    accounts_free: int
    accounts_pro: int
    depleted_users: int
    depletion_p50_seconds: float | None
    depletion_p90_seconds: float | None
    converted: dict[int, int]
    modal_shown: int
    modal_dismissed: int
    upgrade_clicked: int
    funnel_modal_users: int
    funnel_clicked_users: int
    funnel_paid_users: int
    upgrades: int
    cancellations: int
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def utilisation(self) -> float | None:
        return ratio(self.credits_charged, self.credits_granted)

    def conversion_rate(self, days: int) -> float | None:
        return ratio(self.converted[days], self.depleted_users)

    @property
    def click_through_rate(self) -> float | None:
        return ratio(self.funnel_clicked_users, self.funnel_modal_users)

    @property
    def paid_rate(self) -> float | None:
        return ratio(self.funnel_paid_users, self.funnel_modal_users)

    @property
    def is_empty(self) -> bool:
        return not (
            self.uses
            or self.failed
            or self.credits_granted
            or self.modal_shown
            or self.upgrades
            or self.cancellations
        )


def build_dashboard(date_range: DateRange) -> Dashboard:
    """Compute every number of the dashboard for `date_range` (four queries on the rollups and
    the pending raw events, one count of accounts)."""
    params = date_range.params()
    per_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_feature: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    credits_charged = credits_granted = credits_waived = 0
    for row in db.session.execute(COUNTS_SQL, params):
        per_day[row.day][row.event_type] += row.events
        totals[row.event_type] += row.events
        if row.event_type == "credit_consumed":
            per_feature[row.feature][row.plan or "free"] += row.events
            credits_charged += row.credits
            if row.plan != "pro" and row.feature in FEATURES:
                credits_waived += row.events * FEATURES[row.feature].cost - row.credits
        elif row.event_type == "credit_granted":
            credits_granted += row.credits

    active_total: dict[str, int] = defaultdict(int)
    active_daily: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in db.session.execute(RANGE_ACTIVE_SQL, params):
        active_total[row.plan] += row.users
    for row in db.session.execute(DAILY_ACTIVE_SQL, params):
        active_daily[row.day][row.plan] += row.users

    funnel = db.session.execute(FUNNEL_SQL, params).one()
    accounts = dict(
        db.session.execute(
            select(User.subscription_status, func.count())
            .where(User.deleted_at.is_(None))
            .group_by(User.subscription_status)
        ).all()
    )

    uses = totals["credit_consumed"]
    features = [
        FeatureRow(
            key,
            feature.title,
            sum(per_feature[key].values()),
            per_feature[key]["free"],
            per_feature[key]["pro"],
            ratio(sum(per_feature[key].values()), uses),
        )
        for key, feature in FEATURES.items()
    ]
    days = [
        DayRow(
            day,
            per_day[day]["credit_consumed"],
            per_day[day]["generation_failed"],
            per_day[day]["upgrade_modal_shown"],
            per_day[day]["upgrade_modal_dismissed"],
            per_day[day]["upgrade_clicked"],
            per_day[day]["subscription_upgraded"],
            per_day[day]["subscription_canceled"],
            active_daily[day]["free"],
            active_daily[day]["pro"],
        )
        for day in date_range.days
    ]
    return Dashboard(
        range=date_range,
        credits_charged=credits_charged,
        credits_granted=credits_granted,
        uses=uses,
        credits_waived=credits_waived,
        failed=totals["generation_failed"],
        features=features,
        days=days,
        active_free=active_total["free"],
        active_pro=active_total["pro"],
        accounts_free=accounts.get("free", 0),
        accounts_pro=accounts.get("pro", 0),
        depleted_users=funnel.depleted_users,
        depletion_p50_seconds=funnel.depletion_p50,
        depletion_p90_seconds=funnel.depletion_p90,
        converted={7: funnel.converted_7, 30: funnel.converted_30},
        modal_shown=totals["upgrade_modal_shown"],
        modal_dismissed=totals["upgrade_modal_dismissed"],
        upgrade_clicked=totals["upgrade_clicked"],
        funnel_modal_users=funnel.modal_users,
        funnel_clicked_users=funnel.clicked_users,
        funnel_paid_users=funnel.paid_users,
        upgrades=totals["subscription_upgraded"],
        cancellations=totals["subscription_canceled"],
    )
