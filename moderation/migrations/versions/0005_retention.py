"""retention: posts.purged_at, and an index for the purge scan

Revision ID: 0005
Revises: 0004

- ``posts.purged_at``: set when the retention job (``moderation.storage.retention``)
  emptied the post's text and dropped its photos' bytes; NULL until then.
- ``ix_posts_unpurged``: a partial index on (school_id, created_at) over the posts not
  purged yet, so the sweeper's scan reads only those, however many were purged before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_posts_unpurged",
        "posts",
        ["school_id", "created_at"],
        sqlite_where=sa.text("purged_at IS NULL"),
        postgresql_where=sa.text("purged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_posts_unpurged", table_name="posts")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("purged_at")
