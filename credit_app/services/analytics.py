"""Analytics events and their rollups. Events carry a user id and nothing personal.

Every event is a row of `analytics_events` written in the caller's transaction, an outbox:
`ledger_events` gives the events that follow a ledger change (the credit service writes them
in the same statement as the row, from `_post`), `track` writes the others (upgrade modal,
generation failures). So no event is lost when Redis is down, and none exists for a change
that rolled back.

`roll_up` folds pending events into the rollups and stamps them `rolled_up_at` in one
statement: a second run finds nothing left to fold, and a crash folds nothing. Readers add
the still-pending events to the rollups (admin_analytics), so every event counts exactly once.
`purge_rolled_up_events` deletes raw events past the retention once they are folded.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select, text, update

from credit_app.errors import ValidationFailed
from credit_app.models import (
    EVENT_TYPES,
    AnalyticsEvent,
    LedgerKind,
    Posting,
    User,
)
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db

DEFAULT_BATCH_SIZE = 5000
# pg_try_advisory_xact_lock key: one roll-up at a time, so their upserts never deadlock.
ROLLUP_LOCK_KEY = 0x616E616C79  # "analy"


def new_event_id() -> str:
    return uuid.uuid4().hex


def ledger_events(posting: Posting) -> list[dict[str, Any]]:
    """The analytics events that a ledger row implies, as column values (nothing is written).

    consume → credit_consumed (credits = what was charged: 0 for Pro, and 0 with
    `enforced: false` for a free user outside the enforcement rollout); a spend that leaves a
    free user at 0 → credit_depleted; grant → credit_granted; a plan change (an `adjust` row
    from "subscription") → subscription_upgraded or subscription_canceled. Each has a fresh
    `event_id`; the credit service writes them with the row, in the same statement.
    """
    metadata = posting.metadata
    plan = metadata.get("plan") or posting.plan_before
    events: list[dict[str, Any]] = []
    if posting.kind == LedgerKind.CONSUME:
        properties: dict[str, Any] = {"via": "reservation" if posting.reservation_id else "direct"}
        if plan != "pro" and posting.charged == 0 and posting.credits_consumed > 0:
            properties["enforced"] = False
        events.append(
            {
                "event_type": "credit_consumed",
                "feature": posting.feature_used,
                "plan": plan,
                "credits": posting.charged,
                "properties": properties,
            }
        )
    spent = posting.kind in (LedgerKind.CONSUME, LedgerKind.RESERVE) and posting.amount < 0
    if spent and posting.balance_after == 0 and plan != "pro":
        events.append(
            {
                "event_type": "credit_depleted",
                "feature": posting.feature_used,
                "plan": plan,
                "credits": 0,
                "properties": {},
            }
        )
    if posting.kind == LedgerKind.GRANT:
        events.append(
            {
                "event_type": "credit_granted",
                "feature": None,
                "plan": posting.plan_before,
                "credits": posting.amount,
                "properties": {"source": posting.feature_used},
            }
        )
    if posting.kind == LedgerKind.ADJUST and posting.feature_used == "subscription":
        change = {"from": metadata.get("from"), "to": metadata.get("to")}
        if change["to"] == "pro":
            events.append(
                {
                    "event_type": "subscription_upgraded",
                    "feature": None,
                    "plan": "pro",
                    "credits": 0,
                    "properties": change,
                }
            )
        elif change["from"] == "pro":
            events.append(
                {
                    "event_type": "subscription_canceled",
                    "feature": None,
                    "plan": change["to"],
                    "credits": 0,
                    "properties": change,
                }
            )
    for event in events:
        event["event_id"] = new_event_id()
    return events


def track(
    event_type: str,
    user_id: int | None,
    *,
    feature: str | None = None,
    credits_remaining: int | None = None,
    properties: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """Write an event in the current transaction (it is kept only if that commits).

    Returns its id. Raises ValidationFailed for an unknown event type.
    """
    if event_type not in EVENT_TYPES:
        raise ValidationFailed(f"Unknown analytics event {event_type!r}.")
    user = db.session.get(User, user_id) if user_id is not None else None
    event_id = new_event_id()
    db.session.execute(
        insert(AnalyticsEvent).values(
            event_id=event_id,
            event_type=event_type,
            user_id=user_id,
            feature=feature,
            credits_remaining=credits_remaining,
            properties=properties or {},
            plan=user.subscription_status if user is not None else None,
            occurred_at=occurred_at or utcnow(),
        )
    )
    return event_id


ROLL_UP_SQL = text("""
WITH batch AS (
    SELECT id FROM analytics_events
    WHERE rolled_up_at IS NULL
    ORDER BY occurred_at, id
    LIMIT :batch_size
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE analytics_events AS e SET rolled_up_at = :now
    FROM batch WHERE e.id = batch.id
    RETURNING e.event_type, e.user_id, e.feature, e.plan, e.credits, e.occurred_at,
              (e.occurred_at AT TIME ZONE 'UTC')::date AS day
), counted AS (
    INSERT INTO analytics_daily_rollups AS r (day, event_type, feature, plan, events, credits)
    SELECT day, event_type, coalesce(feature, ''), coalesce(plan, ''), count(*),
           coalesce(sum(credits), 0)
    FROM claimed GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, event_type, feature, plan) DO UPDATE
    SET events = r.events + excluded.events, credits = r.credits + excluded.credits
    RETURNING 1
), active AS (
    INSERT INTO analytics_active_days (day, plan, user_id)
    SELECT DISTINCT day, coalesce(plan, ''), user_id FROM claimed
    WHERE event_type = 'credit_consumed' AND user_id IS NOT NULL
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING day, plan
), daily_active AS (
    INSERT INTO analytics_daily_active_users AS d (day, plan, users)
    SELECT day, plan, count(*) FROM active GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, plan) DO UPDATE SET users = d.users + excluded.users
    RETURNING 1
), funnels AS (
    INSERT INTO analytics_user_funnels AS f (
        user_id, signed_up_at, first_depleted_at, first_modal_shown_at,
        first_upgrade_clicked_at, first_upgraded_at, last_active_at)
    SELECT c.user_id, u.created_at,
           min(c.occurred_at) FILTER (WHERE c.event_type = 'credit_depleted'),
           min(c.occurred_at) FILTER (WHERE c.event_type = 'upgrade_modal_shown'),
           min(c.occurred_at) FILTER (WHERE c.event_type = 'upgrade_clicked'),
           min(c.occurred_at) FILTER (WHERE c.event_type = 'subscription_upgraded'),
           max(c.occurred_at) FILTER (WHERE c.event_type = 'credit_consumed')
    FROM claimed AS c JOIN users AS u ON u.id = c.user_id
    GROUP BY c.user_id, u.created_at ORDER BY c.user_id
    ON CONFLICT (user_id) DO UPDATE SET
        first_depleted_at = least(f.first_depleted_at, excluded.first_depleted_at),
        first_modal_shown_at = least(f.first_modal_shown_at, excluded.first_modal_shown_at),
        first_upgrade_clicked_at = least(f.first_upgrade_clicked_at,
                                         excluded.first_upgrade_clicked_at),
        first_upgraded_at = least(f.first_upgraded_at, excluded.first_upgraded_at),
        last_active_at = greatest(f.last_active_at, excluded.last_active_at)
    RETURNING 1
)
SELECT (SELECT count(*) FROM claimed) AS folded,
       (SELECT count(*) FROM counted) + (SELECT count(*) FROM daily_active)
       + (SELECT count(*) FROM funnels) AS touched
""")


def roll_up(batch_size: int = DEFAULT_BATCH_SIZE, now: datetime | None = None) -> int:
    """Fold up to `batch_size` pending events into the rollups; returns how many it folded.

    Returns 0 without waiting when another roll-up holds the lock. Raises ValidationFailed
    for a batch size below 1.
    """
    if batch_size < 1:
        raise ValidationFailed("The batch size must be at least 1.")
    locked: bool = db.session.execute(
        select(text("pg_try_advisory_xact_lock(:key)")), {"key": ROLLUP_LOCK_KEY}
    ).scalar_one()
    if not locked:
        return 0
    row = db.session.execute(ROLL_UP_SQL, {"batch_size": batch_size, "now": now or utcnow()}).one()
    return row.folded


def purge_rolled_up_events(
    retention_days: int, now: datetime | None = None, limit: int = 10_000
) -> int:
    """Delete up to `limit` rolled-up raw events older than the retention; returns the count.

    Raises ValidationFailed for a retention below one day.
    """
    if retention_days < 1:
        raise ValidationFailed("The retention must be at least one day.")
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    doomed = (
        select(AnalyticsEvent.id)
        .where(AnalyticsEvent.rolled_up_at.is_not(None), AnalyticsEvent.occurred_at < cutoff)
        .limit(limit)
        .scalar_subquery()
    )
    # A DELETE without RETURNING gives a CursorResult; Session.execute is typed as any Result.
    result = cast(
        CursorResult[Any],
        db.session.execute(delete(AnalyticsEvent).where(AnalyticsEvent.id.in_(doomed))),
    )
    return result.rowcount


def anonymise_user_events(user_id: int) -> int:
    """Detach the user's raw events from them and drop their properties; returns the count.

    The rollups hold counts only, so totals do not change.
    """
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(AnalyticsEvent)
            .where(AnalyticsEvent.user_id == user_id)
            .values(user_id=None, properties={})
        ),
    )
    return result.rowcount
