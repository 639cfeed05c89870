"""Does the web tier fit the database? Checked once when gunicorn starts.

Every web worker has its own SQLAlchemy pool of `pool_size + max_overflow` connections; all
workers of all web dynos, the rq workers and one-off dynos share PostgreSQL's
`max_connections` (less the superuser reserve). When the web tier alone can ask for more than
that, PostgreSQL answers "too many clients" under load (the app then sheds with 503s, see
web/responses.py), so the start-up log says so and what to change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

# Connections kept free for the rq worker, a release phase, `heroku pg:psql` and migrations.
HEADROOM = 10


@dataclass(frozen=True)
class ConnectionBudget:
    workers: int
    per_worker: int
    max_connections: int
    reserved: int

    @property
    def wanted(self) -> int:
        return self.workers * self.per_worker

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved - HEADROOM

    @property
    def fits(self) -> bool:
        return self.wanted <= self.available

    def advice(self) -> str:
        """One log line: the arithmetic, and what to change when it does not fit."""
        summary = (
            f"{self.workers} web workers x {self.per_worker} pooled connections = "
            f"{self.wanted}; PostgreSQL allows {self.max_connections} "
            f"({self.reserved} reserved, {HEADROOM} kept for the worker and one-offs)"
        )
        if self.fits:
            return f"database connections fit: {summary}"
        per_worker = max(1, self.available // max(1, self.workers))
        return (
            f"database connections do NOT fit: {summary}. Lower DATABASE_POOL_SIZE + "
            f"DATABASE_MAX_OVERFLOW to {per_worker} per worker in all, lower "
            "WEB_CONCURRENCY, or put PgBouncer in front of PostgreSQL; with several web "
            "dynos divide by their number too."
        )


def measure_budget(engine, workers: int) -> ConnectionBudget:
    """Read the server's limits through `engine`. Raises SQLAlchemyError if unreachable."""
    options = engine.pool
    per_worker = options.size() + max(0, options._max_overflow)
    with engine.connect() as connection:
        max_connections = int(connection.execute(text("SHOW max_connections")).scalar_one())
        reserved = int(connection.execute(text("SHOW superuser_reserved_connections")).scalar_one())
    return ConnectionBudget(workers, per_worker, max_connections, reserved)


def report_connection_budget(
    workers: int, logger: logging.Logger, app: Flask
) -> ConnectionBudget | None:
    """Measure the budget of `app` and log the advice; never stops the server (a database
    that cannot be asked is logged as a warning and gives None)."""
    from credit_app.platform.extensions import db

    with app.app_context():
        try:
            budget = measure_budget(db.engine, workers)
        except SQLAlchemyError as exc:
            logger.warning("could not check the database connection budget: %s", exc)
            return None
    (logger.info if budget.fits else logger.warning)(budget.advice())
    return budget
