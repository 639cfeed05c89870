"""users, credit ledger, reservations, api tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-27 02:04:50.265189

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=10), server_default="user", nullable=False),
        sa.Column("credits_remaining", sa.Integer(), server_default="6", nullable=False),
        sa.Column("credits_total", sa.Integer(), server_default="6", nullable=False),
        sa.Column(
            "subscription_status", sa.String(length=20), server_default="free", nullable=False
        ),
        sa.Column(
            "credits_granted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
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
        sa.CheckConstraint("role IN ('user', 'admin')", name=op.f("ck_users_role_allowed")),
        sa.CheckConstraint(
            "subscription_status IN ('free', 'pro')",
            name=op.f("ck_users_subscription_status_allowed"),
        ),
        sa.CheckConstraint(
            "credits_remaining >= 0", name=op.f("ck_users_credits_remaining_non_negative")
        ),
        sa.CheckConstraint("credits_total >= 0", name=op.f("ck_users_credits_total_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index("ix_users_subscription_status", "users", ["subscription_status"], unique=False)
    op.create_index(
        "uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"], unique=False)
    op.create_index("uq_api_tokens_token_hash", "api_tokens", ["token_hash"], unique=True)
    op.create_table(
        "credit_reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.String(length=255), nullable=False),
        sa.Column("feature", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'pending') = (resolved_at IS NULL)",
            name=op.f("ck_credit_reservations_resolved_when_final"),
        ),
        sa.CheckConstraint(
            "feature IN ('interior', 'exterior', 'sketch', 'furnish', 'remove', 'video')",
            name=op.f("ck_credit_reservations_feature_allowed"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'committed', 'released', 'expired')",
            name=op.f("ck_credit_reservations_status_allowed"),
        ),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_credit_reservations_amount_non_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_credit_reservations_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_reservations")),
    )
    op.create_index(
        "ix_credit_reservations_pending_expires_at",
        "credit_reservations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "uq_credit_reservations_user_generation",
        "credit_reservations",
        ["user_id", "generation_id"],
        unique=True,
    )
    op.create_table(
        "credit_transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("feature_used", sa.String(length=20), nullable=False),
        sa.Column("credits_consumed", sa.Integer(), server_default="1", nullable=False),
        sa.Column("generation_id", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("balance_after", sa.Integer(), nullable=False),
        sa.Column("reservation_id", sa.Integer(), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "feature_used IN ('interior', 'exterior', 'sketch', 'furnish', 'remove', 'video', 'registration', 'admin_grant', 'refund', 'subscription', 'adjustment')",
            name=op.f("ck_credit_transactions_feature_used_allowed"),
        ),
        sa.CheckConstraint(
            "kind IN ('grant', 'consume', 'reserve', 'release', 'refund', 'adjust')",
            name=op.f("ck_credit_transactions_kind_allowed"),
        ),
        sa.CheckConstraint(
            "balance_after >= 0", name=op.f("ck_credit_transactions_balance_after_non_negative")
        ),
        sa.CheckConstraint(
            "credits_consumed >= 0",
            name=op.f("ck_credit_transactions_credits_consumed_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_credit_transactions_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["credit_reservations.id"],
            name=op.f("fk_credit_transactions_reservation_id_credit_reservations"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_credit_transactions_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_transactions")),
    )
    op.create_index(
        "idx_credit_transactions_created_at", "credit_transactions", ["created_at"], unique=False
    )
    op.create_index(
        "idx_credit_transactions_user_id", "credit_transactions", ["user_id"], unique=False
    )
    op.create_index(
        "ix_credit_transactions_user_id_id",
        "credit_transactions",
        ["user_id", sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "uq_credit_transactions_registration_grant",
        "credit_transactions",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("feature_used = 'registration'"),
    )
    op.create_index(
        "uq_credit_transactions_user_generation_kind",
        "credit_transactions",
        ["user_id", "generation_id", "kind"],
        unique=True,
        postgresql_where=sa.text("generation_id IS NOT NULL"),
    )


def downgrade():
    op.drop_index(
        "uq_credit_transactions_user_generation_kind",
        table_name="credit_transactions",
        postgresql_where=sa.text("generation_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_credit_transactions_registration_grant",
        table_name="credit_transactions",
        postgresql_where=sa.text("feature_used = 'registration'"),
    )
    op.drop_index("ix_credit_transactions_user_id_id", table_name="credit_transactions")
    op.drop_index("idx_credit_transactions_user_id", table_name="credit_transactions")
    op.drop_index("idx_credit_transactions_created_at", table_name="credit_transactions")
    op.drop_table("credit_transactions")
    op.drop_index("uq_credit_reservations_user_generation", table_name="credit_reservations")
    op.drop_index(
        "ix_credit_reservations_pending_expires_at",
        table_name="credit_reservations",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("credit_reservations")
    op.drop_index("uq_api_tokens_token_hash", table_name="api_tokens")
    op.drop_index("ix_api_tokens_user_id", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_index("ix_users_subscription_status", table_name="users")
    op.drop_table("users")
