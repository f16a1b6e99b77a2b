"""review queue: reviewer sign-in, reports, appeals, escalation

Revision ID: 0002
Revises: 0001

- ``schools.review_secret``: signs the platform's sign-in tokens for the review page;
  existing schools get a fresh random secret here.
- ``flags.kind`` (hold | report | appeal), ``flags.detail`` (reports, appeal text),
  ``flags.escalated_at`` and ``flags.escalation`` (overdue | threat), and a partial
  unique index: at most one open flag per post.
- ``review_sessions``: signed-in reviewers' browsers (the cookie's hash).

Batch operations, so that SQLite (which cannot alter columns) works as PostgreSQL does.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schools") as batch:
        batch.add_column(sa.Column("review_secret", sa.String(length=128), nullable=True))
    schools = sa.table("schools", sa.column("id", sa.String), sa.column("review_secret", sa.String))
    conn = op.get_bind()
    for (school_id,) in conn.execute(sa.select(schools.c.id)).all():
        conn.execute(
            schools.update()
            .where(schools.c.id == school_id)
            .values(review_secret=secrets.token_urlsafe(32))
        )
    with op.batch_alter_table("schools") as batch:
        batch.alter_column("review_secret", existing_type=sa.String(length=128), nullable=False)

    with op.batch_alter_table("flags") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="hold")
        )
        batch.add_column(
            sa.Column("detail", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("escalation", sa.String(length=16), nullable=True))
        batch.create_index(
            "ux_flags_open_post",
            ["post_pk"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )

    op.create_table(
        "review_sessions",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("school_id", sa.String(length=128), nullable=False),
        sa.Column("staff_pk", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("group_ids", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("lang", sa.String(length=2), nullable=False),
        sa.Column("jti", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_review_sessions_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_pk"],
            ["staff.pk"],
            name=op.f("fk_review_sessions_staff_pk_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_review_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_review_sessions_token_hash")),
        sa.UniqueConstraint("school_id", "jti", name=op.f("uq_review_sessions_school_id_jti")),
    )


def downgrade() -> None:
    op.drop_table("review_sessions")
    with op.batch_alter_table("flags") as batch:
        batch.drop_index("ux_flags_open_post")
        batch.drop_column("escalation")
        batch.drop_column("escalated_at")
        batch.drop_column("detail")
        batch.drop_column("kind")
    with op.batch_alter_table("schools") as batch:
        batch.drop_column("review_secret")
