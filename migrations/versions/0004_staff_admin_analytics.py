"""staff admin, analytics rollups, rollout flag, audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:58:43.824686

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "analytics_daily_active_users",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("plan", sa.String(length=10), nullable=False),
        sa.Column("users", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "users >= 0", name=op.f("ck_analytics_daily_active_users_users_non_negative")
        ),
        sa.PrimaryKeyConstraint("day", "plan", name=op.f("pk_analytics_daily_active_users")),
    )
    op.create_table(
        "analytics_daily_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("feature", sa.String(length=20), nullable=False),
        sa.Column("plan", sa.String(length=10), nullable=False),
        sa.Column("events", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("credits", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "event_type IN ('credit_consumed', 'credit_depleted', 'credit_granted', 'upgrade_modal_shown', 'upgrade_modal_dismissed', 'upgrade_clicked', 'subscription_upgraded', 'subscription_canceled', 'generation_failed')",
            name=op.f("ck_analytics_daily_rollups_event_type_allowed"),
        ),
        sa.CheckConstraint(
            "events >= 0", name=op.f("ck_analytics_daily_rollups_events_non_negative")
        ),
        sa.PrimaryKeyConstraint(
            "day", "event_type", "feature", "plan", name=op.f("pk_analytics_daily_rollups")
        ),
    )
    op.create_table(
        "analytics_active_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("plan", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_analytics_active_days_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("day", "plan", "user_id", name=op.f("pk_analytics_active_days")),
    )
    op.create_index(
        "ix_analytics_active_days_user_id", "analytics_active_days", ["user_id"], unique=False
    )
    op.create_table(
        "analytics_user_funnels",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("signed_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_depleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_modal_shown_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_upgrade_clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_upgraded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_analytics_user_funnels_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_analytics_user_funnels")),
    )
    op.create_index(
        "ix_analytics_user_funnels_first_depleted_at",
        "analytics_user_funnels",
        ["first_depleted_at"],
        unique=False,
        postgresql_where=sa.text("first_depleted_at IS NOT NULL"),
    )
    op.create_index(
        "ix_analytics_user_funnels_first_modal_shown_at",
        "analytics_user_funnels",
        ["first_modal_shown_at"],
        unique=False,
        postgresql_where=sa.text("first_modal_shown_at IS NOT NULL"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_user_id", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=100), nullable=True),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "action IN ('credits.grant', 'credits.remove', 'credits.adjust', 'plan.change', 'rollout.change', 'webhook.rerun', 'account.delete')",
            name=op.f("ck_audit_log_action_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_audit_log_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["target_user_id"],
            ["users.id"],
            name=op.f("fk_audit_log_target_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"], unique=False)
    op.create_index(
        "ix_audit_log_target_user_id",
        "audit_log",
        ["target_user_id"],
        unique=False,
        postgresql_where=sa.text("target_user_id IS NOT NULL"),
    )
    op.create_table(
        "feature_flags",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("percentage", sa.Integer(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "percentage BETWEEN 0 AND 100", name=op.f("ck_feature_flags_percentage_range")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["users.id"],
            name=op.f("fk_feature_flags_updated_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_feature_flags")),
    )
    op.add_column("analytics_events", sa.Column("plan", sa.String(length=10), nullable=True))
    op.add_column("analytics_events", sa.Column("credits", sa.Integer(), nullable=True))
    op.add_column("analytics_events", sa.Column("transaction_id", sa.Integer(), nullable=True))
    op.add_column(
        "analytics_events", sa.Column("rolled_up_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_analytics_events_occurred_at", "analytics_events", ["occurred_at"], unique=False
    )
    op.create_index(
        "ix_analytics_events_pending",
        "analytics_events",
        ["occurred_at"],
        unique=False,
        postgresql_where=sa.text("rolled_up_at IS NULL"),
    )
    op.create_foreign_key(
        op.f("fk_analytics_events_transaction_id_credit_transactions"),
        "analytics_events",
        "credit_transactions",
        ["transaction_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    op.drop_column("users", "deleted_at")
    op.drop_constraint(
        op.f("fk_analytics_events_transaction_id_credit_transactions"),
        "analytics_events",
        type_="foreignkey",
    )
    op.drop_index(
        "ix_analytics_events_pending",
        table_name="analytics_events",
        postgresql_where=sa.text("rolled_up_at IS NULL"),
    )
    op.drop_index("ix_analytics_events_occurred_at", table_name="analytics_events")
    op.drop_column("analytics_events", "rolled_up_at")
    op.drop_column("analytics_events", "transaction_id")
    op.drop_column("analytics_events", "credits")
    op.drop_column("analytics_events", "plan")
    op.drop_table("feature_flags")
    op.drop_index(
        "ix_audit_log_target_user_id",
        table_name="audit_log",
        postgresql_where=sa.text("target_user_id IS NOT NULL"),
    )
    op.drop_index("ix_audit_log_action_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(
        "ix_analytics_user_funnels_first_modal_shown_at",
        table_name="analytics_user_funnels",
        postgresql_where=sa.text("first_modal_shown_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_analytics_user_funnels_first_depleted_at",
        table_name="analytics_user_funnels",
        postgresql_where=sa.text("first_depleted_at IS NOT NULL"),
    )
    op.drop_table("analytics_user_funnels")
    op.drop_index("ix_analytics_active_days_user_id", table_name="analytics_active_days")
    op.drop_table("analytics_active_days")
    op.drop_table("analytics_daily_rollups")
    op.drop_table("analytics_daily_active_users")
