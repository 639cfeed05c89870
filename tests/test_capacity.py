"""The start-up check of web workers x pool against PostgreSQL's max_connections."""

import logging

from credit_app.platform.capacity import (
    HEADROOM,
    ConnectionBudget,
    measure_budget,
    report_connection_budget,
)
from credit_app.platform.extensions import db


def test_reads_the_servers_limits_and_the_pool_size(app):
    budget = measure_budget(db.engine, workers=2)
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert budget.per_worker == options["pool_size"] + options["max_overflow"]
    assert budget.max_connections >= 20 and budget.reserved >= 0


def test_a_budget_that_fits_says_so():
    budget = ConnectionBudget(workers=2, per_worker=15, max_connections=100, reserved=3)
    assert budget.fits and budget.advice().startswith("database connections fit")


def test_a_budget_that_does_not_fit_says_what_to_change():
    budget = ConnectionBudget(workers=4, per_worker=30, max_connections=100, reserved=3)
    assert not budget.fits
    advice = budget.advice()
    per_worker = (100 - 3 - HEADROOM) // 4
    assert f"to {per_worker} per worker" in advice
    assert "WEB_CONCURRENCY" in advice and "PgBouncer" in advice


def test_the_start_up_report_logs_the_arithmetic(app, caplog):
    logger = logging.getLogger("gunicorn.error.test")
    with caplog.at_level(logging.INFO, logger=logger.name):
        budget = report_connection_budget(2, logger, app=app)
    assert budget is not None
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.INFO if budget.fits else logging.WARNING, budget.advice())
    ]
