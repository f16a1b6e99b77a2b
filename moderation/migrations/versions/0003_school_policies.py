"""school policies, versioned; notices on decisions

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "school_policies",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_school_policies_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_school_policies")),
        sa.UniqueConstraint(
            "school_id", "version", name=op.f("uq_school_policies_school_id_version")
        ),
    )

    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("notices", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("notices")
    op.drop_table("school_policies")
