"""Migrations on an empty database: upgrade, downgrade to nothing, upgrade again; one head;
and the models match what the migrations build."""

from __future__ import annotations

import uuid

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from credit_app import create_app
from credit_app.platform.extensions import db

pytestmark = pytest.mark.concurrency


@pytest.fixture
def empty_database_app(app):
    """An app bound to a brand-new empty database on the same server, dropped afterwards."""
    name = f"credit_app_migrations_{uuid.uuid4().hex[:8]}"
    server_url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(database="postgres")
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(database=name)
    fresh = create_app(
        "testing",
        overrides={
            "SQLALCHEMY_DATABASE_URI": database_url.render_as_string(hide_password=False),
        },
    )
    try:
        yield fresh
    finally:
        with fresh.app_context():
            db.engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def tables(app) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_database_app):
    app = empty_database_app
    with app.app_context():
        flask_migrate.upgrade()
        assert tables(app) == set(db.metadata.tables)
        assert {"users", "credit_transactions", "credit_reservations"} <= tables(app)
        flask_migrate.downgrade(revision="base")
        assert tables(app) == set()
        flask_migrate.upgrade()
        assert "users" in tables(app)


def test_single_head(app):
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_models_match_the_migrations(empty_database_app):
    with empty_database_app.app_context():
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []


def test_spec_columns_and_defaults(empty_database_app):
    with empty_database_app.app_context():
        flask_migrate.upgrade()
        inspector = inspect(db.engine)
        users = {column["name"]: column for column in inspector.get_columns("users")}
        assert users["credits_remaining"]["default"] == "6"
        assert users["credits_total"]["default"] == "6"
        assert "free" in users["subscription_status"]["default"]
        assert "now()" in users["credits_granted_at"]["default"]
        ledger = {column["name"] for column in inspector.get_columns("credit_transactions")}
        assert {
            "id",
            "user_id",
            "feature_used",
            "credits_consumed",
            "generation_id",
            "created_at",
            "metadata",
        } <= ledger
        indexes = {index["name"] for index in inspector.get_indexes("credit_transactions")}
        assert {"idx_credit_transactions_user_id", "idx_credit_transactions_created_at"} <= indexes
        foreign = inspector.get_foreign_keys("credit_transactions")
        assert any(
            key["referred_table"] == "users" and key["constrained_columns"] == ["user_id"]
            for key in foreign
        )
