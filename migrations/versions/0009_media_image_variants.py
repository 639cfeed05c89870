"""media: the widths of each generation's WebP copies (thumbnails and display images)

Revision ID: 0009_media
Revises: 0008_ops
Create Date: 2026-12-01 21:40:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_media"
down_revision = "0008_ops"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("generations") as batch:
        batch.add_column(
            sa.Column(
                "image_variants",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default="{}",
                nullable=False,
            )
        )


def downgrade():
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("image_variants")
