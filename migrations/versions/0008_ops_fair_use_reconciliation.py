"""fair use (a generation's queue), reconciliation runs and findings

Revision ID: 0008_ops
Revises: 0007_issue13
Create Date: 2026-12-01 21:45:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_ops"
down_revision = "0007_issue13"
branch_labels = None
depends_on = None

KINDS = (
    "status",
    "product",
    "period_end",
    "missing_here",
    "missing_at_creem",
    "unknown_product",
    "plan",
    "unreadable",
)


def _in(column, values):
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade():
    op.add_column(
        "generations",
        sa.Column("queue", sa.String(length=40), nullable=False, server_default="generations"),
    )
    op.create_index("ix_generations_user_id_created_at", "generations", ["user_id", "created_at"])
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(length=10), nullable=False, server_default="running"),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("customers_checked", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("subscriptions_checked", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
        sa.CheckConstraint(
            _in("status", ("running", "finished", "failed")),
            name=op.f("ck_reconciliation_runs_status_allowed"),
        ),
    )
    op.create_index("ix_reconciliation_runs_started_at", "reconciliation_runs", ["started_at"])
    op.create_table(
        "reconciliation_findings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("creem_subscription_id", sa.String(length=100)),
        sa.Column("creem_customer_id", sa.String(length=100)),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ours", postgresql.JSONB()),
        sa.Column("theirs", postgresql.JSONB()),
        sa.Column("resolution", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            _in("kind", KINDS), name=op.f("ck_reconciliation_findings_kind_allowed")
        ),
        sa.CheckConstraint(
            _in("resolution", ("fixed", "needs_attention")),
            name=op.f("ck_reconciliation_findings_resolution_allowed"),
        ),
    )
    op.create_index(
        "ix_reconciliation_findings_run_id", "reconciliation_findings", ["run_id", "id"]
    )
    op.create_index("ix_reconciliation_findings_user_id", "reconciliation_findings", ["user_id"])


def downgrade():
    op.drop_table("reconciliation_findings")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_generations_user_id_created_at", table_name="generations")
    op.drop_column("generations", "queue")
