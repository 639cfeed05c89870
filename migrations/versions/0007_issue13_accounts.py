"""accounts: email verification, welcome mailboxes, session versions, staff two-factor, mail outbox

Revision ID: 0007_issue13
Revises: 0006_issue12
Create Date: 2026-12-01 18:45:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_issue13"
down_revision = "0006_issue12"
branch_labels = None
depends_on = None

OLD_ACTIONS = (
    "credits.grant",
    "credits.remove",
    "credits.adjust",
    "plan.change",
    "rollout.change",
    "webhook.rerun",
    "account.delete",
)
NEW_ACTIONS = (
    *OLD_ACTIONS,
    "staff.sign_in",
    "staff.sign_in_failed",
    "staff.two_factor_enabled",
    "user.disable",
    "user.enable",
)

# The mailbox identity of an address (services/mailboxes.py): lower-case; for Gmail the dots
# and +tag of the local part are dropped and googlemail.com is gmail.com. Then SHA-256.
MAILBOX_SQL = """
encode(sha256(convert_to(CASE
  WHEN split_part(lower(email), '@', 2) IN ('gmail.com', 'googlemail.com')
  THEN replace(split_part(split_part(lower(email), '@', 1), '+', 1), '.', '') || '@gmail.com'
  ELSE lower(email) END, 'UTF8')), 'hex')
"""


def _actions(values):
    return "action IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("pending_email", sa.String(length=254)))
        batch.add_column(
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("totp_secret", sa.String(length=64)))
        batch.add_column(sa.Column("totp_enabled_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger()))
        batch.add_column(
            sa.Column(
                "email_opt_outs",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default="[]",
                nullable=False,
            )
        )
    # Accounts made before verification existed keep generating: they count as verified.
    op.execute("UPDATE users SET email_verified_at = created_at WHERE deleted_at IS NULL")

    op.create_table(
        "welcome_mailboxes",
        sa.Column("mailbox_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="SET NULL",
            name=op.f("fk_welcome_mailboxes_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("mailbox_hash", name=op.f("pk_welcome_mailboxes")),
    )
    op.execute(
        f"INSERT INTO welcome_mailboxes (mailbox_hash, user_id) "
        f"SELECT DISTINCT ON (mailbox) mailbox, id FROM "
        f"(SELECT {MAILBOX_SQL} AS mailbox, id FROM users WHERE deleted_at IS NULL) m "
        f"ORDER BY mailbox, id ON CONFLICT DO NOTHING"
    )

    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
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
            name=op.f("fk_recovery_codes_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])

    op.create_table(
        "outbound_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("template", sa.String(length=40), nullable=False),
        sa.Column(
            "context", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="SET NULL",
            name=op.f("fk_outbound_emails_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_emails")),
    )
    op.create_index(
        "uq_outbound_emails_dedupe_key",
        "outbound_emails",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
    )
    op.create_index(
        "ix_outbound_emails_unsent",
        "outbound_emails",
        ["created_at"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_outbound_emails_user_id", "outbound_emails", ["user_id"])

    op.drop_constraint(op.f("ck_audit_log_action_allowed"), "audit_log", type_="check")
    op.create_check_constraint(
        op.f("ck_audit_log_action_allowed"), "audit_log", _actions(NEW_ACTIONS)
    )


def downgrade():
    op.execute("DELETE FROM audit_log WHERE NOT (" + _actions(OLD_ACTIONS) + ")")
    op.drop_constraint(op.f("ck_audit_log_action_allowed"), "audit_log", type_="check")
    op.create_check_constraint(
        op.f("ck_audit_log_action_allowed"), "audit_log", _actions(OLD_ACTIONS)
    )
    op.drop_index("ix_outbound_emails_user_id", table_name="outbound_emails")
    op.drop_index("ix_outbound_emails_unsent", table_name="outbound_emails")
    op.drop_index("uq_outbound_emails_dedupe_key", table_name="outbound_emails")
    op.drop_table("outbound_emails")
    op.drop_index("ix_recovery_codes_user_id", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("welcome_mailboxes")
    with op.batch_alter_table("users") as batch:
        for column in (
            "email_opt_outs",
            "totp_last_step",
            "totp_enabled_at",
            "totp_secret",
            "disabled_at",
            "session_version",
            "pending_email",
            "email_verified_at",
        ):
            batch.drop_column(column)
