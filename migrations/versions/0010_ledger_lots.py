"""credit lots (expiring grants, spend order), lot movements, top-up packs, free refills

Revision ID: 0010_ledger
Revises: 0009_media
Create Date: 2026-12-01 21:40:00

Every user with a ledger gets one `opening` lot holding the balance they have now (no
expiry), so that from here on a user's lots sum to their balance.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_ledger"
down_revision = "0009_media"
branch_labels = None
depends_on = None

OLD_KINDS = ("grant", "consume", "reserve", "release", "refund", "adjust")
NEW_KINDS = (*OLD_KINDS, "expire")
FEATURES = ("interior", "exterior", "sketch", "furnish", "remove", "video")
OLD_SOURCES = (*FEATURES, "registration", "admin_grant", "refund", "subscription", "adjustment")
NEW_SOURCES = (*OLD_SOURCES, "pack", "pack_refund", "refill", "expiry")
LOT_SOURCES = (
    "opening",
    "registration",
    "admin_grant",
    "pack",
    "refill",
    "refund",
    "adjustment",
    "subscription",
)


def _in(column, values):
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def _ledger_checks(kinds, sources):
    op.drop_constraint("ck_credit_transactions_kind_allowed", "credit_transactions")
    op.drop_constraint("ck_credit_transactions_feature_used_allowed", "credit_transactions")
    op.create_check_constraint(
        op.f("ck_credit_transactions_kind_allowed"), "credit_transactions", _in("kind", kinds)
    )
    op.create_check_constraint(
        op.f("ck_credit_transactions_feature_used_allowed"),
        "credit_transactions",
        _in("feature_used", sources),
    )


def upgrade():
    _ledger_checks(NEW_KINDS, NEW_SOURCES)
    op.add_column("webhook_events", sa.Column("order_id", sa.String(length=100)))
    op.create_index("ix_webhook_events_order_id", "webhook_events", ["order_id"])

    op.create_table(
        "credit_lots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("purchased", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("creem_order_id", sa.String(length=100)),
        sa.Column("product_id", sa.String(length=100)),
        sa.Column("transaction_id", sa.Integer()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("refunded_at", sa.DateTime(timezone=True)),
        sa.Column("refund_shortfall", sa.Integer(), server_default="0", nullable=False),
        sa.Column("shortfall_cleared_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(_in("source", LOT_SOURCES), name=op.f("ck_credit_lots_source_allowed")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= granted",
            name=op.f("ck_credit_lots_remaining_in_range"),
        ),
        sa.CheckConstraint(
            "refund_shortfall >= 0", name=op.f("ck_credit_lots_refund_shortfall_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="RESTRICT",
            name=op.f("fk_credit_lots_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["credit_transactions.id"],
            ondelete="RESTRICT",
            name=op.f("fk_credit_lots_transaction_id_credit_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lots")),
    )
    op.create_index(
        "ix_credit_lots_user_live",
        "credit_lots",
        ["user_id"],
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index(
        "ix_credit_lots_lapsing",
        "credit_lots",
        ["expires_at"],
        postgresql_where=sa.text("remaining > 0 AND expires_at IS NOT NULL"),
    )
    op.create_index(
        "uq_credit_lots_creem_order_id",
        "credit_lots",
        ["creem_order_id"],
        unique=True,
        postgresql_where=sa.text("creem_order_id IS NOT NULL"),
    )

    op.create_table(
        "credit_lot_movements",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Integer()),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"],
            ["credit_lots.id"],
            ondelete="RESTRICT",
            name=op.f("fk_credit_lot_movements_lot_id_credit_lots"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["credit_transactions.id"],
            ondelete="RESTRICT",
            name=op.f("fk_credit_lot_movements_transaction_id_credit_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lot_movements")),
    )
    op.create_index("ix_credit_lot_movements_lot_id", "credit_lot_movements", ["lot_id"])
    op.create_index(
        "ix_credit_lot_movements_transaction_id", "credit_lot_movements", ["transaction_id"]
    )

    op.create_table(
        "credit_refills",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Integer()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name=op.f("fk_credit_refills_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["credit_transactions.id"],
            ondelete="SET NULL",
            name=op.f("fk_credit_refills_transaction_id_credit_transactions"),
        ),
        sa.PrimaryKeyConstraint("user_id", "period", name=op.f("pk_credit_refills")),
    )

    # The balance each user has now becomes their opening lot; `transaction_id` is their
    # newest ledger row, the one whose balance_after it carries (the audit checks lot
    # movements on the rows after it).
    op.execute("""
        INSERT INTO credit_lots (user_id, source, granted, remaining, transaction_id)
        SELECT u.id, 'opening', u.credits_remaining, u.credits_remaining,
               (SELECT max(t.id) FROM credit_transactions AS t WHERE t.user_id = u.id)
        FROM users AS u
        WHERE EXISTS (SELECT 1 FROM credit_transactions AS t WHERE t.user_id = u.id)""")
    op.execute("""
        INSERT INTO credit_lot_movements (lot_id, transaction_id, amount)
        SELECT id, NULL, granted FROM credit_lots WHERE source = 'opening'""")


def downgrade():
    moved = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM credit_transactions WHERE kind = 'expire' OR feature_used IN "
                "('pack', 'pack_refund', 'refill', 'expiry')"
            )
        )
        .scalar_one()
    )
    if moved:
        raise RuntimeError(
            f"{moved} ledger rows are expiries, packs or refills; the ledger "
            "cannot go back to a schema without them"
        )
    op.drop_table("credit_refills")
    op.drop_table("credit_lot_movements")
    op.drop_table("credit_lots")
    op.drop_index("ix_webhook_events_order_id", table_name="webhook_events")
    op.drop_column("webhook_events", "order_id")
    _ledger_checks(OLD_KINDS, OLD_SOURCES)
