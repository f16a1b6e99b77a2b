"""The database schema, as SQLAlchemy ORM tables; Alembic migrations follow this file.

Every row belongs to one school (tenant) through ``school_id``; every query in
``moderation.storage`` filters on it. External ids (the platform's ids for groups,
students, posts, ...) are unique per school; internal integer keys join the tables.
History is kept by appending: consent answers, decisions and audit events are never
updated or deleted; a flag is closed, never deleted.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ExternalId = String(128)  # the platform's ids
Json = JSON().with_variant(JSON(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class School(Base):
    __tablename__ = "schools"

    id: Mapped[str] = mapped_column(ExternalId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex HMAC-SHA256
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str] = mapped_column(String(128))  # signs decision callbacks
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # signs the platform's sign-in tokens for the review page (HS256); see docs/review.md
    review_secret: Mapped[str] = mapped_column(String(128), default=new_secret)
    # bumped in the transaction that deletes image hashes, so that the workers' cached
    # hash indexes (workers/hash_lists.py) know to rebuild instead of only adding rows
    hash_lists_generation: Mapped[int] = mapped_column(Integer, default=0)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("school_id", "external_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(ExternalId)
    name: Mapped[str] = mapped_column(String(200))


class Student(Base):
    __tablename__ = "students"
    __table_args__ = (UniqueConstraint("school_id", "external_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(ExternalId)
    name: Mapped[str] = mapped_column(String(200))
    group_pk: Mapped[int | None] = mapped_column(ForeignKey("groups.pk", ondelete="SET NULL"))


class Staff(Base):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("school_id", "external_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(ExternalId)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # teacher | staff | admin
    groups: Mapped[list[Group]] = relationship(secondary="staff_groups")


class StaffGroup(Base):
    __tablename__ = "staff_groups"

    staff_pk: Mapped[int] = mapped_column(
        ForeignKey("staff.pk", ondelete="CASCADE"), primary_key=True
    )
    group_pk: Mapped[int] = mapped_column(
        ForeignKey("groups.pk", ondelete="CASCADE"), primary_key=True
    )


class Parent(Base):
    __tablename__ = "parents"
    __table_args__ = (UniqueConstraint("school_id", "external_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(ExternalId)
    name: Mapped[str] = mapped_column(String(200))
    children: Mapped[list[Student]] = relationship(secondary="parent_students")


class ParentStudent(Base):
    __tablename__ = "parent_students"

    parent_pk: Mapped[int] = mapped_column(
        ForeignKey("parents.pk", ondelete="CASCADE"), primary_key=True
    )
    student_pk: Mapped[int] = mapped_column(
        ForeignKey("students.pk", ondelete="CASCADE"), primary_key=True
    )


class ConsentAnswer(Base):
    """One parent's answer for one scope, appended; the latest per parent counts."""

    __tablename__ = "consent_answers"
    __table_args__ = (Index("ix_consent_student_scope", "student_pk", "scope", "recorded_at"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.pk", ondelete="CASCADE"))
    parent_pk: Mapped[int] = mapped_column(ForeignKey("parents.pk", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))  # api | import
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("school_id", "external_id"),
        Index("ix_posts_status_updated", "status", "updated_at"),
        # the retention job's scan: a school's posts not purged yet, oldest first
        Index(
            "ix_posts_unpurged",
            "school_id",
            "created_at",
            sqlite_where=text("purged_at IS NULL"),
            postgresql_where=text("purged_at IS NULL"),
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(ExternalId)
    body_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical request
    channel_type: Mapped[str] = mapped_column(String(16))
    channel_id: Mapped[str] = mapped_column(ExternalId)
    group_pk: Mapped[int | None] = mapped_column(ForeignKey("groups.pk"))
    author_id: Mapped[str] = mapped_column(ExternalId)
    author_role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    enqueue_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # when the retention job emptied the text and dropped the photos' bytes
    # (moderation.storage.retention); decisions, scores and audit events are kept
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="post", order_by="Attachment.position"
    )
    tagged: Mapped[list[Student]] = relationship(secondary="post_tagged_students")


class PostTaggedStudent(Base):
    __tablename__ = "post_tagged_students"

    post_pk: Mapped[int] = mapped_column(
        ForeignKey("posts.pk", ondelete="CASCADE"), primary_key=True
    )
    student_pk: Mapped[int] = mapped_column(
        ForeignKey("students.pk", ondelete="CASCADE"), primary_key=True
    )


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("post_pk", "external_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.pk", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(ExternalId)
    position: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)  # bytes of the original
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # original; purged by retention
    released_data: Mapped[bytes | None] = mapped_column(LargeBinary)  # metadata stripped
    post: Mapped[Post] = relationship(back_populates="attachments")


class Score(Base):
    """One check's result for one post (``text`` or ``media``), written idempotently."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("post_pk", "check_name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.pk", ondelete="CASCADE"))
    check_name: Mapped[str] = mapped_column(String(16))  # text | media
    scorer: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)  # False: the check failed after retries
    result: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """Decisions are appended: sequence 1 is the automatic one, later ones are human."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("post_pk", "sequence"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.pk", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    notices: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    decided_by: Mapped[str] = mapped_column(String(128))  # "auto" or a staff id
    policy_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Flag(Base):
    """An item in the teacher's flag queue; closed, never deleted."""

    __tablename__ = "flags"
    __table_args__ = (
        Index("ix_flags_school_status", "school_id", "status"),
        # at most one open flag per post: a second report joins the open flag
        Index(
            "ux_flags_open_post",
            "post_pk",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.pk", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(32))  # the top reason code
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="hold")  # hold | report | appeal
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # reports, appeal text
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalation: Mapped[str | None] = mapped_column(String(16))  # overdue | threat


class AuditEvent(Base):
    """Append-only trail: who did what to which post, when and why."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_school_at", "school_id", "at"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    post_pk: Mapped[int | None] = mapped_column(ForeignKey("posts.pk", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(Json)


class Callback(Base):
    """Outbox of decision callbacks to the platform; delivered at least once."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_status_updated", "status", "updated_at"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.pk", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SchoolPolicyVersion(Base):
    """A school's policy document; versions are appended, the highest one is in force."""

    __tablename__ = "school_policies"
    __table_args__ = (UniqueConstraint("school_id", "version"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(Json)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewSession(Base):
    """A reviewer's signed-in browser: the cookie holds a random token, this row its hash.

    Groups are the sign-in token's groups intersected with the roster's at sign-in; every
    request intersects them with the roster again, so a roster change takes effect at once.
    """

    __tablename__ = "review_sessions"
    __table_args__ = (UniqueConstraint("school_id", "jti"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of cookie
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    staff_pk: Mapped[int] = mapped_column(ForeignKey("staff.pk", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))  # teacher | staff | admin
    group_ids: Mapped[list[str]] = mapped_column(Json)  # external group ids
    name: Mapped[str] = mapped_column(String(200))
    csrf_token: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str] = mapped_column(String(2), default="nl")
    jti: Mapped[str | None] = mapped_column(String(128))  # a sign-in token is used once
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FaceReference(Base):
    """A child's enrolled face descriptor: the 128 floats only, never the photo.

    Biometric data (GDPR art. 9): deleted with the student (ON DELETE CASCADE) and by the
    erasure endpoints; never written to the audit trail or returned by the API.
    """

    __tablename__ = "face_references"
    __table_args__ = (Index("ix_face_references_school_student", "school_id", "student_pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.pk", ondelete="CASCADE"))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # 128 little-endian float32
    model: Mapped[str] = mapped_column(String(64))  # the descriptor that made it
    enrolled_by: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))  # api | cli
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImageHash(Base):
    """One perceptual hash of one image on one of a school's lists.

    Lists: ``released`` (every released photo), ``removed`` (taken down by the platform),
    ``blocked`` (the school's block list). An image has up to 9 rows, one per variant
    (0: the whole image, 1-8: the crop variants of ``models.images.hashes``), sharing an
    ``entry`` id, so that a block-list entry is added and deleted as one.
    """

    __tablename__ = "image_hashes"
    __table_args__ = (
        # the workers' incremental refresh: a school's rows of some lists above a pk
        Index("ix_image_hashes_school_list_pk", "school_id", "list", "pk"),
        Index("ix_image_hashes_school_entry", "school_id", "entry"),
        # and rows added lately, whose transaction may have committed after a higher pk's
        Index("ix_image_hashes_school_added", "school_id", "added_at"),
        Index("ix_image_hashes_post", "post_pk"),
        # an attachment's image is on a list once (NULLs, as on the block list, are distinct)
        UniqueConstraint("list", "attachment_pk", "variant"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    list_name: Mapped[str] = mapped_column("list", String(16))  # released | removed | blocked
    entry: Mapped[str] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(String(16))  # pHash, 16 lowercase hex characters
    variant: Mapped[int] = mapped_column(Integer)  # 0 whole image, 1-8 crop variants
    post_pk: Mapped[int | None] = mapped_column(ForeignKey("posts.pk", ondelete="SET NULL"))
    attachment_pk: Mapped[int | None] = mapped_column(
        ForeignKey("attachments.pk", ondelete="SET NULL")
    )
    note: Mapped[str | None] = mapped_column(String(500))
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TakedownReport(Base):
    """A released photo that now breaks consent: the platform is asked to take it down.

    At most one open report per (attachment, student): a re-check that finds the same
    child again joins it. ``student_pk`` becomes NULL when the student is erased.
    """

    __tablename__ = "takedown_reports"
    __table_args__ = (
        Index("ix_takedown_reports_school_status", "school_id", "status"),
        Index(
            "ux_takedown_reports_open",
            "attachment_pk",
            "student_pk",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.pk", ondelete="CASCADE"))
    attachment_pk: Mapped[int] = mapped_column(ForeignKey("attachments.pk", ondelete="CASCADE"))
    student_pk: Mapped[int | None] = mapped_column(ForeignKey("students.pk", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(32))  # consent_withdrawn | reference_added
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(128))
