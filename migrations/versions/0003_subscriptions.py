"""subscriptions and webhook events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 02:24:36.777396

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("event_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_webhook_events_attempts_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    op.create_index(
        "ix_webhook_events_unprocessed",
        "webhook_events",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_index("uq_webhook_events_event_id", "webhook_events", ["event_id"], unique=True)
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("creem_subscription_id", sa.String(length=100), nullable=False),
        sa.Column("creem_customer_id", sa.String(length=100), nullable=True),
        sa.Column("product_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "cancel_at_period_end", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("access_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("staff_flag", sa.String(length=20), nullable=True),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "staff_flag IS NULL OR staff_flag IN ('refund', 'dispute')",
            name=op.f("ck_subscriptions_staff_flag_allowed"),
        ),
        sa.CheckConstraint(
            "status IN ('incomplete', 'active', 'trialing', 'past_due', 'unpaid', 'paused', 'scheduled_cancel', 'canceled', 'expired')",
            name=op.f("ck_subscriptions_status_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_subscriptions_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(
        "ix_subscriptions_access_ends_at",
        "subscriptions",
        ["access_ends_at"],
        unique=False,
        postgresql_where=sa.text("access_ends_at IS NOT NULL"),
    )
    op.create_index(
        "ix_subscriptions_creem_customer_id", "subscriptions", ["creem_customer_id"], unique=False
    )
    op.create_index("ix_subscriptions_user_id", "subscriptions", ["user_id"], unique=False)
    op.create_index(
        "uq_subscriptions_creem_subscription_id",
        "subscriptions",
        ["creem_subscription_id"],
        unique=True,
    )


def downgrade():
    op.drop_index("uq_subscriptions_creem_subscription_id", table_name="subscriptions")
    op.drop_index("ix_subscriptions_user_id", table_name="subscriptions")
    op.drop_index("ix_subscriptions_creem_customer_id", table_name="subscriptions")
    op.drop_index(
        "ix_subscriptions_access_ends_at",
        table_name="subscriptions",
        postgresql_where=sa.text("access_ends_at IS NOT NULL"),
    )
    op.drop_table("subscriptions")
    op.drop_index("uq_webhook_events_event_id", table_name="webhook_events")
    op.drop_index(
        "ix_webhook_events_unprocessed",
        table_name="webhook_events",
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.drop_table("webhook_events")
