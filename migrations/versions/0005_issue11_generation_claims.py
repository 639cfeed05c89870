"""generations remember which job run claimed them

Revision ID: 0005_issue11
Revises: 0004
Create Date: 2026-12-01 18:40:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005_issue11"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("generations", sa.Column("claimed_by", sa.String(length=64), nullable=True))


def downgrade():
    op.drop_column("generations", "claimed_by")
