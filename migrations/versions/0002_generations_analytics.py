"""generations, analytics events, sidebar preference

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:16:18.052624

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "analytics_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("feature", sa.String(length=20), nullable=True),
        sa.Column("credits_remaining", sa.Integer(), nullable=True),
        sa.Column(
            "properties",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "event_type IN ('credit_consumed', 'credit_depleted', 'credit_granted', 'upgrade_modal_shown', 'upgrade_modal_dismissed', 'upgrade_clicked', 'subscription_upgraded', 'subscription_canceled', 'generation_failed')",
            name=op.f("ck_analytics_events_event_type_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_analytics_events_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_events")),
    )
    op.create_index(
        "ix_analytics_events_type_occurred_at",
        "analytics_events",
        ["event_type", "occurred_at"],
        unique=False,
    )
    op.create_index("ix_analytics_events_user_id", "analytics_events", ["user_id"], unique=False)
    op.create_index("uq_analytics_events_event_id", "analytics_events", ["event_id"], unique=True)
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.String(length=255), nullable=False),
        sa.Column("reservation_id", sa.Integer(), nullable=True),
        sa.Column("feature", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="queued", nullable=False),
        sa.Column(
            "options", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("input_path", sa.String(length=500), nullable=False),
        sa.Column("output_path", sa.String(length=500), nullable=True),
        sa.Column("output_media_type", sa.String(length=50), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "feature IN ('interior', 'exterior', 'sketch', 'furnish', 'remove', 'video')",
            name=op.f("ck_generations_feature_allowed"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_generations_status_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["credit_reservations.id"],
            name=op.f("fk_generations_reservation_id_credit_reservations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_generations_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
    )
    op.create_index(
        "ix_generations_status_created_at", "generations", ["status", "created_at"], unique=False
    )
    op.create_index("ix_generations_user_id_id", "generations", ["user_id", "id"], unique=False)
    op.create_index(
        "uq_generations_user_generation_id",
        "generations",
        ["user_id", "generation_id"],
        unique=True,
    )
    op.add_column(
        "users",
        sa.Column(
            "sidebar_collapsed", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )


def downgrade():
    op.drop_column("users", "sidebar_collapsed")
    op.drop_index("uq_generations_user_generation_id", table_name="generations")
    op.drop_index("ix_generations_user_id_id", table_name="generations")
    op.drop_index("ix_generations_status_created_at", table_name="generations")
    op.drop_table("generations")
    op.drop_index("uq_analytics_events_event_id", table_name="analytics_events")
    op.drop_index("ix_analytics_events_user_id", table_name="analytics_events")
    op.drop_index("ix_analytics_events_type_occurred_at", table_name="analytics_events")
    op.drop_table("analytics_events")
