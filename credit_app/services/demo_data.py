"""`flask seed demo-data`: a realistic month of users, generations and subscriptions.

Everything goes through the real services (the credit ledger, its analytics outbox, admin
grants and plan changes), then the timestamps are moved back to when each thing happened in
the simulated month, and the analytics are rolled up: the admin dashboard has a month to show.
Demo accounts use the reserved domain `demo.roomcraft.test` and cannot sign in.
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, text

from credit_app.errors import DemoDataExists
from credit_app.models import (
    CreditTransaction,
    Generation,
    GenerationStatus,
    Subscription,
    User,
    UserRole,
)
from credit_app.platform.extensions import db
from credit_app.services import analytics, credits
from credit_app.services.passwords import hash_password

DEMO_DOMAIN = "demo.roomcraft.test"
FEATURE_WEIGHTS = {
    "interior": 34,
    "furnish": 18,
    "exterior": 15,
    "sketch": 12,
    "remove": 13,
    "video": 8,
}
FIRST_NAMES = (
    "maya",
    "liam",
    "sofia",
    "noah",
    "emma",
    "lucas",
    "olivia",
    "mateo",
    "ava",
    "leo",
    "chloe",
    "ethan",
    "zoe",
    "adam",
    "nora",
    "hugo",
    "ines",
    "omar",
    "lea",
    "finn",
    "mila",
    "jonas",
    "sara",
    "elias",
    "ana",
    "theo",
    "yara",
    "ben",
)
LAST_NAMES = (
    "lopez",
    "schmidt",
    "rossi",
    "dubois",
    "nguyen",
    "kowalski",
    "silva",
    "jensen",
    "novak",
    "garcia",
    "smith",
    "muller",
    "costa",
    "berg",
    "ito",
    "khan",
    "moreau",
)


@dataclass
class SeedReport:
    users: int = 0
    generations: int = 0
    failed: int = 0
    upgrades: int = 0
    cancellations: int = 0
    grants: int = 0
    events: int = 0
    ledger_times: dict[int, datetime] = field(default_factory=dict)


@dataclass
class _Clock:
    """A user's own timeline inside the simulated month; never runs past `end`."""

    now: datetime
    end: datetime
    rng: random.Random

    def advance(self, low_minutes: float, high_minutes: float) -> bool:
        self.now += timedelta(minutes=self.rng.uniform(low_minutes, high_minutes))
        return self.now < self.end


def demo_data_exists() -> bool:
    return (
        db.session.execute(
            select(func.count()).select_from(User).where(User.email.like(f"%@{DEMO_DOMAIN}"))
        ).scalar_one()
        > 0
    )


def seed_demo_data(
    users: int = 400, days: int = 30, seed: int = 7, end: datetime | None = None
) -> SeedReport:
    """Create `users` demo users over the last `days` days, with their activity; commits per
    user and rolls the analytics up at the end.

    Raises DemoDataExists when demo users are already there, ValueError for fewer than 1 user
    or day.
    """
    if users < 1 or days < 1:
        raise ValueError("users and days must be at least 1")
    if demo_data_exists():
        raise DemoDataExists()
    rng = random.Random(seed)
    end = end or datetime.now(UTC)
    start = end - timedelta(days=days)
    unusable = hash_password(secrets.token_urlsafe(32))
    admin = User(
        email=f"admin@{DEMO_DOMAIN}",
        password_hash=unusable,
        role=UserRole.ADMIN,
        credits_remaining=0,
        credits_total=0,
        created_at=start,
    )
    db.session.add(admin)
    db.session.flush()
    report = SeedReport()
    for number in range(users):
        # More sign-ups later in the month, as a product that grows.
        signed_up = start + (end - start) * (rng.random() ** 0.8)
        report.ledger_times = {}
        user = _simulate_user(number, signed_up, end, admin.id, unusable, rng, report)
        _backdate(user, report.ledger_times)
        db.session.commit()
    while analytics.roll_up() > 0:
        db.session.commit()
    db.session.commit()
    return report


def _simulate_user(
    number: int,
    signed_up: datetime,
    end: datetime,
    admin_id: int,
    password_hash: str,
    rng: random.Random,
    report: SeedReport,
) -> User:
    email = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}.{number}@{DEMO_DOMAIN}"
    user = User(
        email=email,
        password_hash=password_hash,
        credits_remaining=0,
        credits_total=0,
        created_at=signed_up,
        credits_granted_at=signed_up,
        email_verified_at=signed_up,
    )
    db.session.add(user)
    db.session.flush()
    welcome = current_app.config["SIGNUP_CREDITS"]
    _at(
        report,
        credits.grant_credits(user.id, welcome, "Welcome credits", source="registration"),
        signed_up,
    )
    report.users += 1
    clock = _Clock(signed_up, end, rng)
    # How keen: most try a few designs, some use every credit in a day, a few come back often.
    keenness = rng.choices(("tries", "regular", "heavy"), weights=(35, 45, 20))[0]
    pace = {"tries": (60, 60 * 48), "regular": (10, 60 * 20), "heavy": (3, 60 * 6)}[keenness]
    uses_wanted = {
        "tries": rng.randint(1, 4),
        "regular": rng.randint(5, 12),
        "heavy": rng.randint(12, 40),
    }[keenness]
    if rng.random() < 0.04:
        _at(
            report,
            credits.grant_credits(
                user.id,
                rng.choice((3, 5, 10)),
                "Demo: goodwill credits after a support chat",
                actor_id=admin_id,
            ),
            clock.now,
        )
        report.grants += 1
    subscribed: Subscription | None = None
    for _ in range(uses_wanted):
        if not clock.advance(*pace):
            break
        if not user.is_pro and user.credits_remaining == 0:
            subscribed = _hit_the_wall(user, clock, rng, report)
            if subscribed is None:
                break
            continue
        _generate(user, clock, rng, report)
    if subscribed is not None and rng.random() < 0.12 and clock.advance(60 * 24, 60 * 24 * 8):
        subscribed.status = "canceled"
        subscribed.canceled_at = clock.now
        _at(
            report,
            credits.change_plan(
                user.id,
                "free",
                "Back to the free plan: demo cancel",
                details={"subscription_id": subscribed.id},
            ),
            clock.now,
        )
        report.cancellations += 1
    return user


def _generate(user: User, clock: _Clock, rng: random.Random, report: SeedReport) -> None:
    feature = rng.choices(list(FEATURE_WEIGHTS), weights=list(FEATURE_WEIGHTS.values()))[0]
    generation_id = uuid.uuid4().hex
    started = clock.now
    reservation = credits.reserve_credit(user.id, feature, generation_id, now=started)
    _at(report, _last_ledger_row(user.id), started)
    took = timedelta(seconds=rng.uniform(6, 40) * (4 if feature == "video" else 1))
    failed = rng.random() < 0.06
    generation = Generation(
        user_id=user.id,
        generation_id=generation_id,
        reservation_id=reservation.id,
        feature=feature,
        options={"demo": True},
        provider="local",
        input_path=f"demo/{user.id}/{generation_id}/input.png",
        status=GenerationStatus.FAILED if failed else GenerationStatus.SUCCEEDED,
        attempts=1,
        created_at=started,
        started_at=started + timedelta(seconds=1),
        finished_at=started + took,
    )
    db.session.add(generation)
    if failed:
        generation.error_message = "The model service did not answer. Your credit was returned."
        credits.release_reservation(reservation.id, reason="generation_failed", now=started + took)
        analytics.track("generation_failed", user.id, feature=feature, occurred_at=started + took)
        report.failed += 1
    else:
        credits.commit_reservation(reservation.id, now=started + took)
    _at(report, _last_ledger_row(user.id), started + took)
    reservation.created_at = started
    reservation.resolved_at = started + took
    report.generations += 1


def _hit_the_wall(
    user: User, clock: _Clock, rng: random.Random, report: SeedReport
) -> Subscription | None:
    """The free balance is empty: the upgrade modal; maybe a click, maybe Pro."""
    analytics.track("upgrade_modal_shown", user.id, credits_remaining=0, occurred_at=clock.now)
    report.events += 1
    choice = rng.random()
    if choice < 0.55:
        analytics.track(
            "upgrade_modal_dismissed",
            user.id,
            occurred_at=clock.now + timedelta(seconds=rng.uniform(2, 30)),
        )
        report.events += 1
        return None
    if choice > 0.85:
        return None
    clock.advance(0.2, 2)
    analytics.track("upgrade_clicked", user.id, occurred_at=clock.now)
    report.events += 1
    if rng.random() > 0.62 or not clock.advance(1, 60 * 24 * 6):
        return None
    subscription = Subscription(
        user_id=user.id,
        creem_subscription_id=f"demo_sub_{uuid.uuid4().hex[:16]}",
        creem_customer_id=f"demo_cus_{uuid.uuid4().hex[:16]}",
        product_id=current_app.config.get("CREEM_PRODUCT_PRO_MONTHLY", "demo_pro_monthly"),
        status="active",
        current_period_start=clock.now,
        current_period_end=clock.now + timedelta(days=30),
        last_event_at=clock.now,
        created_at=clock.now,
    )
    db.session.add(subscription)
    db.session.flush()
    _at(
        report,
        credits.change_plan(
            user.id,
            "pro",
            "Pro started: demo checkout",
            details={"subscription_id": subscription.id},
        ),
        clock.now,
    )
    report.upgrades += 1
    return subscription


def _last_ledger_row(user_id: int) -> CreditTransaction:
    return credits.get_credit_history(user_id, limit=1).items[0]


def _at(report: SeedReport, entry: CreditTransaction | None, when: datetime) -> None:
    if entry is not None:
        report.ledger_times[entry.id] = when


def _backdate(user: User, times: dict[int, datetime]) -> None:
    """Move the user's ledger rows, and the analytics events and audit rows they wrote, to
    their simulated times, before the commit (so a roll-up never sees them at today's date)."""
    ids = list(times)
    db.session.execute(
        text(
            "UPDATE credit_transactions AS t SET created_at = v.at FROM "
            "unnest(CAST(:ids AS integer[]), CAST(:ats AS timestamptz[])) AS v(id, at) "
            "WHERE t.id = v.id"
        ),
        {"ids": ids, "ats": [times[entry_id] for entry_id in ids]},
    )
    db.session.execute(
        text(
            "UPDATE analytics_events AS e SET occurred_at = t.created_at "
            "FROM credit_transactions AS t "
            "WHERE e.transaction_id = t.id AND t.id = ANY(CAST(:ids AS integer[]))"
        ),
        {"ids": ids},
    )
    db.session.execute(
        text(
            "UPDATE audit_log AS a SET created_at = t.created_at "
            "FROM credit_transactions AS t "
            "WHERE a.target_user_id = :user_id AND t.id = ANY(CAST(:ids AS integer[])) "
            "AND (a.details->>'transaction_id')::integer = t.id"
        ),
        {"ids": ids, "user_id": user.id},
    )
    db.session.flush()
    user.credits_granted_at = user.created_at
    user.updated_at = max(times.values(), default=user.created_at)
