"""Command-line tools of the admin and operations side, registered by credit_app.cli:
`flask credits audit`, `flask analytics roll-up`, `flask seed demo-data`."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from credit_app.errors import DomainError
from credit_app.platform.extensions import db

analytics_cli = AppGroup("analytics", help="Analytics rollups and retention.")
seed_cli = AppGroup("seed", help="Sample data.")


@click.command("audit")
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds past its timeout before a pending reservation counts as overdue "
    "(default: twice SWEEP_INTERVAL_SECONDS).",
)
def audit_ledger_command(grace: int | None) -> None:
    """Check every invariant of the credit ledger; exit 1 listing the offending users."""
    from credit_app.services.ledger_audit import audit_ledger

    if grace is None:
        grace = 2 * current_app.config["SWEEP_INTERVAL_SECONDS"]
    report = audit_ledger(grace=timedelta(seconds=grace))
    db.session.rollback()
    if report.ok:
        click.echo(
            f"Ledger OK: {report.users} users, {report.entries} ledger rows, every invariant holds."
        )
        return
    click.echo(
        f"Ledger audit FAILED: {len(report.violations)} problems for "
        f"{len(report.offending_user_ids)} users.",
        err=True,
    )
    for violation in report.violations:
        click.echo(
            f"  [{violation.check}] user {violation.user_id} ({violation.email}): "
            f"{violation.detail}",
            err=True,
        )
    raise SystemExit(1)


@analytics_cli.command("roll-up")
def roll_up_command() -> None:
    """Fold pending analytics events into the rollups and purge old raw events, now."""
    from credit_app.jobs.analytics import roll_up_analytics

    result = roll_up_analytics()
    click.echo(
        f"Folded {result['folded']} events; purged {result['purged']} raw events older "
        f"than {current_app.config['ANALYTICS_RETENTION_DAYS']} days."
    )


@seed_cli.command("demo-data")
@click.option("--users", type=click.IntRange(min=1, max=100_000), default=400, show_default=True)
@click.option("--days", type=click.IntRange(min=1, max=366), default=30, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
def seed_demo_data_command(users: int, days: int, seed: int) -> None:
    """Create a realistic month of users, generations and subscriptions (for screenshots)."""
    from credit_app.services.demo_data import seed_demo_data

    try:
        report = seed_demo_data(users=users, days=days, seed=seed)
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(
        f"Created {report.users} users over {days} days: {report.generations} "
        f"generations ({report.failed} failed), {report.upgrades} upgrades, "
        f"{report.cancellations} cancellations, {report.grants} admin grants. "
        "See /admin/analytics."
    )
