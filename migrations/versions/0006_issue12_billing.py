"""billing from Creem's facts: typed event columns; nothing remembered across events

Revision ID: 0006_issue12
Revises: 0005_issue11
Create Date: 2026-12-01 18:40:00

The access rules read each subscription's newest facts only, so `cancel_at_period_end` and
`past_due_since` (remembered from earlier events) go; `webhook_events` gains the typed
snapshot made on receipt.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_issue12"
down_revision = "0005_issue11"
branch_labels = None
depends_on = None

EVENT_COLUMNS = (
    ("created_at_raw_ms", sa.BigInteger()),
    ("creem_subscription_id", sa.String(length=100)),
    ("creem_customer_id", sa.String(length=100)),
    ("product_id", sa.String(length=100)),
    ("subscription_status", sa.String(length=20)),
    ("period_start", sa.DateTime(timezone=True)),
    ("period_end", sa.DateTime(timezone=True)),
    ("canceled_at", sa.DateTime(timezone=True)),
    ("metadata_user_id", sa.String(length=20)),
    ("checkout_id", sa.String(length=100)),
    ("request_id", sa.String(length=200)),
    ("amount_paid", sa.BigInteger()),
    ("amount_refunded", sa.BigInteger()),
)


def upgrade():
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(
            sa.Column("created_at_clamped", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        for name, column_type in EVENT_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
    op.create_index(
        "ix_webhook_events_creem_subscription_id", "webhook_events", ["creem_subscription_id"]
    )
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("cancel_at_period_end")
        batch.drop_column("past_due_since")


def downgrade():
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column(
                "cancel_at_period_end", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    op.execute(
        "UPDATE subscriptions SET cancel_at_period_end = true WHERE status = 'scheduled_cancel'"
    )
    op.drop_index("ix_webhook_events_creem_subscription_id", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        for name, _column_type in reversed(EVENT_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("created_at_clamped")
