from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from credit_app.errors import DemoDataExists
from credit_app.models import (
    AnalyticsEvent,
    AuditLogEntry,
    CreditTransaction,
    Generation,
    Subscription,
    User,
)
from credit_app.platform.extensions import db
from credit_app.services import admin_analytics
from credit_app.services.demo_data import DEMO_DOMAIN, seed_demo_data
from credit_app.services.ledger_audit import audit_ledger


def test_seed_makes_a_consistent_month(app):
    report = seed_demo_data(users=80, days=30, seed=3)
    assert report.users == 80 and report.generations > 100
    assert report.failed > 0 and report.upgrades > 0
    demo_users = db.session.execute(
        select(func.count()).select_from(User).where(User.email.like(f"%@{DEMO_DOMAIN}"))
    ).scalar_one()
    assert demo_users == 81
    assert (
        db.session.execute(select(func.count()).select_from(Subscription)).scalar_one()
        == report.upgrades
    )
    oldest = db.session.execute(select(func.min(Generation.created_at))).scalar_one()
    assert oldest < datetime.now(UTC) - timedelta(days=10)
    assert (
        db.session.execute(
            select(func.count())
            .select_from(AnalyticsEvent)
            .where(AnalyticsEvent.rolled_up_at.is_(None))
        ).scalar_one()
        == 0
    )
    assert audit_ledger().ok
    audited = db.session.execute(select(AuditLogEntry)).scalars().all()
    assert report.grants > 0 and len(audited) == report.grants
    for entry in audited:
        ledger_row = db.session.get(CreditTransaction, entry.details["transaction_id"])
        assert entry.created_at == ledger_row.created_at
    today = datetime.now(UTC).date()
    dashboard = admin_analytics.build_dashboard(
        admin_analytics.DateRange(today - timedelta(days=29), today)
    )
    assert dashboard.generations == report.generations
    assert dashboard.failed == report.failed
    assert dashboard.upgrades == report.upgrades
    assert dashboard.depleted_users > 0 and dashboard.depletion_p50_seconds > 0
    assert sum(1 for day in dashboard.days if day.generations) > 15


def test_seed_refuses_to_run_twice(app):
    seed_demo_data(users=2, days=2)
    with pytest.raises(DemoDataExists):
        seed_demo_data(users=2, days=2)
    result = app.test_cli_runner().invoke(args=["seed", "demo-data", "--users", "2"])
    assert result.exit_code == 1 and "already there" in result.output


def test_seed_command(app):
    result = app.test_cli_runner().invoke(args=["seed", "demo-data", "--users", "5", "--days", "3"])
    assert result.exit_code == 0, result.output
    assert "Created 5 users over 3 days" in result.output
