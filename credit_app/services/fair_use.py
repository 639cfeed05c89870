"""Fair use for Pro: unlimited generations, but past a number a day they yield to others.

A Pro user's first PRO_FAIR_USE_DAILY_GENERATIONS generations of the (UTC) day go to the
normal generation queue; every later one that day goes to the fair-use queue, which the
worker reads after all the others (jobs/registry.py QUEUE_NAMES). Nothing is ever refused:
the generation runs as soon as nobody else's work waits. Failed generations do not count
(their credit came back too), and free users are never affected (their credits bound them).
The generation row keeps its queue, so the user's progress note and recovery know it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, DateTime, Integer, case, func, select, type_coerce

from credit_app.jobs.registry import GENERATION_FAIR_USE_QUEUE, GENERATION_QUEUE
from credit_app.models import Generation, GenerationStatus, User
from credit_app.platform.clock import utcnow
from credit_app.platform.extensions import db


@dataclass(frozen=True)
class FairUse:
    """Where a user stands today: generations that count, the mark, and whether new ones
    go to the fair-use queue."""

    is_pro: bool
    generations_today: int
    daily_mark: int

    @property
    def past_mark(self) -> bool:
        return self.is_pro and self.generations_today >= self.daily_mark

    @property
    def left_at_full_speed(self) -> int:
        return max(self.daily_mark - self.generations_today, 0)


@dataclass(frozen=True)
class DailyUsage:
    """One user's generations of one day, for admins."""

    user_id: int
    email: str
    plan: str
    generations: int
    fair_use_generations: int
    past_mark: bool


def day_start(now: datetime | None = None) -> datetime:
    """The UTC midnight that starts the day of `now`."""
    now = (now or utcnow()).astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def daily_mark() -> int:
    return int(current_app.config["PRO_FAIR_USE_DAILY_GENERATIONS"])


def _counted_today(now: datetime | None) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (Generation.created_at >= day_start(now), Generation.status != GenerationStatus.FAILED)


def generations_today(user_id: int, now: datetime | None = None) -> int:
    """The user's generations started today (UTC) that did not fail."""
    return db.session.execute(
        select(func.count(Generation.id)).where(Generation.user_id == user_id, *_counted_today(now))
    ).scalar_one()


def fair_use_of(user_id: int, now: datetime | None = None) -> FairUse:
    """Where the user stands today. A user who does not exist counts as free."""
    is_pro = (
        db.session.execute(
            select(User.subscription_status).where(User.id == user_id)
        ).scalar_one_or_none()
        == "pro"
    )
    return FairUse(is_pro, generations_today(user_id, now), daily_mark())


def _past_mark(user_id: int, is_pro: bool | None, now: datetime | None) -> bool:
    """Whether the user's next generation is past the mark; counts only for Pro users (the
    plan is read when `is_pro` is None)."""
    if is_pro is None:
        is_pro = (
            db.session.execute(
                select(User.subscription_status).where(User.id == user_id)
            ).scalar_one_or_none()
            == "pro"
        )
    return is_pro and generations_today(user_id, now) >= daily_mark()


def queue_for_new_generation(
    user_id: int, now: datetime | None = None, is_pro: bool | None = None
) -> str:
    """The queue a generation the user starts now goes to."""
    return GENERATION_FAIR_USE_QUEUE if _past_mark(user_id, is_pro, now) else GENERATION_QUEUE


def hold_timeout(user_id: int, is_pro: bool, now: datetime | None = None) -> timedelta:
    """How long the credit hold of a generation the user starts now lasts: the usual
    RESERVATION_TIMEOUT_SECONDS, or FAIR_USE_RESERVATION_TIMEOUT_SECONDS past the fair-use
    mark (Pro holds cost nothing; a longer one lets the generation wait its turn on the
    fair-use queue instead of timing out)."""
    config = current_app.config
    seconds = config["RESERVATION_TIMEOUT_SECONDS"]
    if is_pro and _past_mark(user_id, True, now):
        seconds = max(seconds, config["FAIR_USE_RESERVATION_TIMEOUT_SECONDS"])
    return timedelta(seconds=seconds)


def daily_usage(now: datetime | None = None, limit: int = 100) -> list[DailyUsage]:
    """Today's heaviest users (most generations first), with how many of theirs went to the
    fair-use queue."""
    mark = daily_mark()
    fair = func.count(Generation.id).filter(Generation.queue == GENERATION_FAIR_USE_QUEUE)
    rows = db.session.execute(
        select(User.id, User.email, User.subscription_status, func.count(Generation.id), fair)
        .join(Generation, Generation.user_id == User.id)
        .where(*_counted_today(now))
        .group_by(User.id)
        .order_by(func.count(Generation.id).desc(), User.id)
        .limit(limit)
    ).all()
    return [
        DailyUsage(user_id, email, plan, total, fair_count, plan == "pro" and total >= mark)
        for user_id, email, plan, total, fair_count in rows
    ]


def usage_history(
    user_id: int, days: int = 14, now: datetime | None = None
) -> list[tuple[datetime, int, int]]:
    """The user's generations (not failed) of each of the last `days` days that had any,
    newest first: (day, generations, on the fair-use queue)."""
    since = day_start(now) - timedelta(days=days - 1)
    day = func.date_trunc("day", func.timezone("UTC", Generation.created_at), type_=DateTime())
    on_fair_use = type_coerce(
        func.sum(case((Generation.queue == GENERATION_FAIR_USE_QUEUE, 1), else_=0)), Integer
    )
    rows = db.session.execute(
        select(day, func.count(Generation.id), on_fair_use)
        .where(
            Generation.user_id == user_id,
            Generation.created_at >= since,
            Generation.status != GenerationStatus.FAILED,
        )
        .group_by(day)
        .order_by(day.desc())
    ).all()
    return [(moment.replace(tzinfo=UTC), total, int(fair or 0)) for moment, total, fair in rows]
