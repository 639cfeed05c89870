"""Benchmark of the admin analytics dashboard at a million events.

In a database of its own (`credit_app_bench_analytics` on the embedded server, or
BENCH_ANALYTICS_DATABASE_URL), it builds 50,000 users and 1,000,000 analytics events spread
over 90 days, folds them into the rollups with the real roll-up job (timed), leaves a day's
worth of events not rolled up (the raw part every query adds), and times the three dashboard
queries and the whole page's `build_dashboard` for 7, 30 and 90 days. It repeats the timings
with 200,000 events not rolled up (the roll-up job stopped for weeks), runs the ledger audit,
and rewrites its own section of docs/performance.md (between the analytics markers; the rest
of the file belongs to bench/credits.py).

    python -m bench.analytics            (--events, --users, --runs, --keep)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "performance.md"
DATABASE = "credit_app_bench_analytics"
START_MARKER = "<!-- analytics:start -->"
END_MARKER = "<!-- analytics:end -->"
RANGES = (7, 30, 90)
EVENT_MIX = (  # event type, share of all events, has a feature
    ("credit_consumed", 0.70, True),
    ("generation_failed", 0.05, True),
    ("credit_granted", 0.06, False),
    ("credit_depleted", 0.04, True),
    ("upgrade_modal_shown", 0.07, False),
    ("upgrade_modal_dismissed", 0.04, False),
    ("upgrade_clicked", 0.025, False),
    ("subscription_upgraded", 0.01, False),
    ("subscription_canceled", 0.005, False),
)
FEATURES = ("interior", "exterior", "sketch", "furnish", "remove", "video")


def announce(message: str) -> None:
    print(message, flush=True)


def database_url() -> str:
    configured = os.environ.get("BENCH_ANALYTICS_DATABASE_URL")
    if configured:
        return configured
    from credit_app.platform import embedded
    from credit_app.platform.config import instance_path

    return embedded.ensure_postgres(instance_path(), DATABASE)


def make_app(url: str):
    from credit_app import create_app
    from credit_app.platform.config import _sqlalchemy_url

    return create_app("development", overrides={"SQLALCHEMY_DATABASE_URI": _sqlalchemy_url(url)})


def reset_schema(app) -> None:
    import flask_migrate

    from credit_app.platform.extensions import db

    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        flask_migrate.upgrade()


def psycopg_conninfo(url: str) -> str:
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "localhost"
    parts = [f"dbname={parsed.database}", f"user={parsed.username or 'postgres'}", f"host={host}"]
    if parsed.port:
        parts.append(f"port={parsed.port}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    return " ".join(parts)


def build_users(connection: psycopg.Connection, users: int) -> None:
    """Users with a 6-credit welcome grant each (a consistent ledger), 10 % on Pro."""
    connection.execute(
        """
        INSERT INTO users (email, password_hash, credits_remaining, credits_total,
                           subscription_status, created_at, credits_granted_at, updated_at)
        SELECT 'bench-analytics-' || n || '@bench.invalid', 'x', 6, 6,
               CASE WHEN n %% 10 = 0 THEN 'pro' ELSE 'free' END,
               now() - random() * interval '120 days', now(), now()
        FROM generate_series(1, %(users)s) AS n""",
        {"users": users},
    )
    connection.execute("""
        INSERT INTO credit_transactions (user_id, feature_used, credits_consumed, kind, amount,
                                         balance_after, created_at, metadata)
        SELECT id, 'registration', 0, 'grant', 6, 6, created_at, '{"reason": "Welcome"}'
        FROM users""")
    # Each welcome grant is a lot (models/credit.py CreditLot) with its opening movement.
    connection.execute("""
        INSERT INTO credit_lots (user_id, source, granted, remaining, transaction_id)
        SELECT user_id, 'registration', 6, 6, id FROM credit_transactions
        WHERE feature_used = 'registration'""")
    connection.execute("""
        INSERT INTO credit_lot_movements (lot_id, transaction_id, amount)
        SELECT id, transaction_id, 6 FROM credit_lots WHERE source = 'registration'""")


def insert_events(
    connection: psycopg.Connection, count: int, days: float, newest: datetime
) -> None:
    """`count` events spread over the `days` before `newest`, in EVENT_MIX proportions."""
    cases, cumulative = [], 0.0
    for event_type, share, _ in EVENT_MIX:
        cumulative += share
        cases.append(f"WHEN r < {cumulative:.4f} THEN '{event_type}'")
    with_feature = ", ".join(f"'{name}'" for name, _, feature in EVENT_MIX if feature)
    features = ", ".join(f"'{name}'" for name in FEATURES)
    connection.execute(
        f"""
        INSERT INTO analytics_events (event_id, event_type, user_id, feature, plan, credits,
                                      occurred_at, properties)
        SELECT md5(random()::text || n), t.event_type, u.id,
               CASE WHEN t.event_type IN ({with_feature})
                    THEN (ARRAY[{features}])[1 + (n %% 6)] END,
               u.subscription_status,
               CASE WHEN t.event_type = 'credit_consumed' AND u.subscription_status = 'free'
                    THEN 1 WHEN t.event_type = 'credit_granted' THEN 6 ELSE 0 END,
               %(newest)s - random() * %(days)s * interval '1 day', '{{}}'
        FROM (SELECT n, random() AS r, 1 + (random() * (SELECT max(id) - 1 FROM users))::int
                     AS user_id
              FROM generate_series(1, %(count)s) AS n) AS s
        CROSS JOIN LATERAL (SELECT CASE {" ".join(cases)} ELSE 'credit_consumed' END
                            AS event_type) AS t
        JOIN users AS u ON u.id = s.user_id""",
        {"count": count, "days": days, "newest": newest},
    )


def timed(function: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and max milliseconds over `runs` calls, after one untimed call."""
    function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def measure_queries(app, runs: int) -> list[tuple[int, str, float, float]]:
    from credit_app.platform.extensions import db
    from credit_app.services import admin_analytics as queries

    rows = []
    today = datetime.now(UTC).date()
    with app.app_context():
        for days in RANGES:
            date_range = queries.DateRange(today - timedelta(days=days - 1), today)
            params = date_range.params()
            for name, sql in (
                ("counts", queries.COUNTS_SQL),
                ("active users in the range", queries.RANGE_ACTIVE_SQL),
                ("active users per day", queries.DAILY_ACTIVE_SQL),
                ("funnel", queries.FUNNEL_SQL),
            ):
                median, worst = timed(
                    lambda sql=sql, params=params: db.session.execute(sql, params).all(), runs
                )
                rows.append((days, name, median, worst))
            median, worst = timed(lambda r=date_range: queries.build_dashboard(r), runs)
            rows.append((days, "**whole dashboard**", median, worst))
            db.session.rollback()
    return rows


def table_sizes(connection: psycopg.Connection) -> dict[str, int]:
    sizes = {}
    for table in (
        "analytics_events",
        "analytics_daily_rollups",
        "analytics_active_days",
        "analytics_user_funnels",
        "users",
    ):
        sizes[table] = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return sizes


def render(
    started: datetime,
    args: argparse.Namespace,
    facts: dict[str, str],
    normal: list,
    backlog: list,
    sizes: dict[str, int],
    rollup_facts: list[str],
    audit_line: str,
) -> str:
    def query_table(rows: list) -> list[str]:
        lines = ["| range | query | median ms | max ms |", "|---:|---|---:|---:|"]
        lines += [
            f"| {days} days | {name} | {median:.1f} | {worst:.1f} |"
            for days, name, median, worst in rows
        ]
        return lines

    lines = [
        START_MARKER,
        "## Analytics queries at a million events",
        "",
        "Generated by `bench/analytics.py` (`python -m bench.analytics`); do not edit by hand.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        *[f"- {key}: {value}" for key, value in facts.items()],
        "",
        "### How it is measured",
        "",
        f"A database of its own gets {args.users:,} users and {args.events:,} analytics events "
        "spread over 90 days (70 % uses, 5 % failures, the rest grants, depletions, modal "
        "views, dismissals, clicks, upgrades and cancellations; 10 % of users on Pro). The real "
        "roll-up job (`roll_up_analytics`, batches of 5,000) folds them into the rollups; then "
        f"{args.pending:,} more events from the last day are left *not* rolled up, so every "
        "query also reads the raw table's pending part, as it does live (the partial index of "
        "pending events is rebuilt after the bulk load first: a million events pending at "
        "once bloats it, see below). Each query runs once "
        f"untimed, then {args.runs} times; the table gives the median and the slowest run "
        "(wall time in the app process, through SQLAlchemy, warm cache). The four queries are "
        "the ones `credit_app/services/admin_analytics.py` runs; *whole dashboard* is "
        "`build_dashboard`, i.e. everything behind one page or one htmx refresh.",
        "",
        "### Rows after the roll-up",
        "",
        "| table | rows |",
        "|---|---:|",
        *[f"| `{table}` | {count:,} |" for table, count in sizes.items()],
        "",
        f"### Dashboard queries ({args.pending:,} events pending)",
        "",
        *query_table(normal),
        "",
        f"### With {args.backlog:,} events pending (the roll-up job stopped for weeks)",
        "",
        *query_table(backlog),
        "",
        "### Reading it",
        "",
        "- The dashboard never scans the million raw events: the counts come from "
        "`analytics_daily_rollups` (a few thousand rows for 90 days), distinct active users "
        "from `analytics_active_days` (one row per user and day with a use; the daily counts "
        "from `analytics_daily_active_users`), time to depletion, "
        "conversion and the funnel from `analytics_user_funnels` (one row per user, read "
        "through partial indexes on the first depletion and first modal), and only the events "
        "not rolled up yet from `analytics_events` through the partial index "
        "`ix_analytics_events_pending` (`rolled_up_at IS NULL`).",
        "- The cost grows with the users active in the range (the distinct count) and with the "
        "backlog of events not rolled up, not with the history of raw events. The roll-up runs "
        "every `ANALYTICS_ROLLUP_INTERVAL_SECONDS` (60), so the pending part is normally "
        "a minute of events.",
        "- After a long outage of the roll-up job (hundreds of thousands of events pending), "
        "the partial index `ix_analytics_events_pending` keeps the size of that backlog and "
        "PostgreSQL may prefer scanning the table; `REINDEX INDEX CONCURRENTLY "
        "ix_analytics_events_pending` once the job has caught up brings the times above "
        "back.",
        "",
        "### Roll-up and retention",
        "",
        *[f"- {line}" for line in rollup_facts],
        "",
        f"Ledger audit at the end (`flask credits audit` checks): {audit_line}",
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def write_section(output: Path, section: str) -> None:
    """Replace the analytics section of `output` (append it when it is not there yet)."""
    current = output.read_text() if output.exists() else ""
    if START_MARKER in current and END_MARKER in current:
        before = current.split(START_MARKER)[0]
        after = current.split(END_MARKER, 1)[1]
        updated = before + section.rstrip("\n") + after
    else:
        updated = current.rstrip("\n") + ("\n\n" if current else "") + section
    output.write_text(updated)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument(
        "--pending",
        type=int,
        default=11_000,
        help="events of the last day left not rolled up (default 11,000)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=200_000,
        help="pending events for the second measurement (default 200,000)",
    )
    parser.add_argument("--runs", type=int, default=9, help="timed runs per query (default 9)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    url = database_url()
    app = make_app(url)
    announce(f"resetting {make_url(url).database} and migrating …")
    reset_schema(app)
    now = datetime.now(UTC)
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as connection:
        announce(f"inserting {args.users:,} users and {args.events:,} events …")
        build_users(connection, args.users)
        insert_events(connection, args.events, days=90, newest=now - timedelta(days=1))
        connection.execute("VACUUM ANALYZE")

    from credit_app.jobs.analytics import roll_up_analytics
    from credit_app.platform.extensions import db
    from credit_app.services.ledger_audit import audit_ledger

    rollup_facts: list[str] = []
    announce("rolling up …")
    with app.app_context():
        rolled = time.perf_counter()
        result = roll_up_analytics(max_batches=10_000)
        seconds = time.perf_counter() - rolled
        rollup_facts.append(
            f"The roll-up job folded {result['folded']:,} events in "
            f"{seconds:.1f} s ({result['folded'] / seconds:,.0f} events/s; "
            "batches of 5,000, one transaction each) and purged "
            f"{result['purged']:,} raw events older than the 90-day "
            "retention."
        )
        rerun = time.perf_counter()
        again = roll_up_analytics()
        rollup_facts.append(
            f"Running it again right after folded {again['folded']} events "
            f"and purged {again['purged']} in "
            f"{(time.perf_counter() - rerun) * 1000:.0f} ms."
        )
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as connection:
        # A million events pending at once is the bench's bulk load, not a live state: it
        # leaves the partial index of pending events bloated, as a long roll-up outage would.
        connection.execute("REINDEX INDEX ix_analytics_events_pending")
        insert_events(connection, args.pending, days=1, newest=now)
        connection.execute("VACUUM ANALYZE")
        sizes = table_sizes(connection)
    announce("timing the dashboard queries …")
    normal = measure_queries(app, args.runs)
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as connection:
        insert_events(connection, args.backlog - args.pending, days=20, newest=now)
        connection.execute("VACUUM ANALYZE")
    announce(f"timing again with {args.backlog:,} events pending …")
    backlog = measure_queries(app, args.runs)
    with app.app_context():
        caught_up = time.perf_counter()
        result = roll_up_analytics(max_batches=10_000)
        rollup_facts.append(
            f"Catching up on the {args.backlog:,}-event backlog took "
            f"{time.perf_counter() - caught_up:.1f} s."
        )
        report = audit_ledger()
        audit_line = (
            "OK, every invariant holds for "
            f"{report.users:,} users and {report.entries:,} ledger rows."
            if report.ok
            else f"FAILED for users {report.offending_user_ids[:20]}"
        )
        server = db.session.execute(text("SHOW server_version")).scalar_one()
        shared = db.session.execute(text("SHOW shared_buffers")).scalar_one()
        db.session.rollback()
    facts = {
        "CPUs": f"{os.cpu_count()} ({platform.machine()})",
        "PostgreSQL": f"{server} (shared_buffers={shared})",
        "Python": platform.python_version(),
        "The run took": f"{time.perf_counter() - clock:.0f} s",
    }
    section = render(started, args, facts, normal, backlog, sizes, rollup_facts, audit_line)
    write_section(args.output, section)
    print(section)
    announce(f"wrote the analytics section of {args.output}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
