"""photo gate: face references, image hash lists, takedown reports

Revision ID: 0004
Revises: 0003

- ``face_references``: a student's enrolled face descriptors (128 float32, never the
  photo), who enrolled them and when; deleted with the student.
- ``image_hashes``: perceptual hashes of released, removed and blocked images, up to 9
  rows an image (the whole image and its crop variants) sharing an ``entry`` id.
- ``takedown_reports``: released photos that a later consent withdrawal or a new
  reference shows to break consent; at most one open report per (attachment, student).
- ``schools.hash_lists_generation``: bumped when image hashes are deleted, so cached
  hash indexes rebuild.

Batch operations for the one column change, so that SQLite works as PostgreSQL does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schools") as batch:
        batch.add_column(
            sa.Column("hash_lists_generation", sa.Integer(), nullable=False, server_default="0")
        )

    op.create_table(
        "face_references",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.String(length=128), nullable=False),
        sa.Column("student_pk", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("enrolled_by", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_face_references_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["student_pk"],
            ["students.pk"],
            name=op.f("fk_face_references_student_pk_students"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_face_references")),
    )
    op.create_index(
        "ix_face_references_school_student", "face_references", ["school_id", "student_pk"]
    )

    op.create_table(
        "image_hashes",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.String(length=128), nullable=False),
        sa.Column("list", sa.String(length=16), nullable=False),
        sa.Column("entry", sa.String(length=32), nullable=False),
        sa.Column("hash", sa.String(length=16), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("post_pk", sa.Integer(), nullable=True),
        sa.Column("attachment_pk", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_image_hashes_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["post_pk"],
            ["posts.pk"],
            name=op.f("fk_image_hashes_post_pk_posts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["attachment_pk"],
            ["attachments.pk"],
            name=op.f("fk_image_hashes_attachment_pk_attachments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_image_hashes")),
        sa.UniqueConstraint(
            "list",
            "attachment_pk",
            "variant",
            name=op.f("uq_image_hashes_list_attachment_pk_variant"),
        ),
    )
    op.create_index("ix_image_hashes_school_list_pk", "image_hashes", ["school_id", "list", "pk"])
    op.create_index("ix_image_hashes_school_entry", "image_hashes", ["school_id", "entry"])
    op.create_index("ix_image_hashes_school_added", "image_hashes", ["school_id", "added_at"])
    op.create_index("ix_image_hashes_post", "image_hashes", ["post_pk"])

    op.create_table(
        "takedown_reports",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.String(length=128), nullable=False),
        sa.Column("post_pk", sa.Integer(), nullable=False),
        sa.Column("attachment_pk", sa.Integer(), nullable=False),
        sa.Column("student_pk", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_takedown_reports_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["post_pk"],
            ["posts.pk"],
            name=op.f("fk_takedown_reports_post_pk_posts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["attachment_pk"],
            ["attachments.pk"],
            name=op.f("fk_takedown_reports_attachment_pk_attachments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["student_pk"],
            ["students.pk"],
            name=op.f("fk_takedown_reports_student_pk_students"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_takedown_reports")),
    )
    op.create_index(
        "ix_takedown_reports_school_status", "takedown_reports", ["school_id", "status"]
    )
    op.create_index(
        "ux_takedown_reports_open",
        "takedown_reports",
        ["attachment_pk", "student_pk"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("ux_takedown_reports_open", table_name="takedown_reports")
    op.drop_index("ix_takedown_reports_school_status", table_name="takedown_reports")
    op.drop_table("takedown_reports")
    op.drop_index("ix_image_hashes_post", table_name="image_hashes")
    op.drop_index("ix_image_hashes_school_added", table_name="image_hashes")
    op.drop_index("ix_image_hashes_school_entry", table_name="image_hashes")
    op.drop_index("ix_image_hashes_school_list_pk", table_name="image_hashes")
    op.drop_table("image_hashes")
    op.drop_index("ix_face_references_school_student", table_name="face_references")
    op.drop_table("face_references")
    with op.batch_alter_table("schools") as batch:
        batch.drop_column("hash_lists_generation")
