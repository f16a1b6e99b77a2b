"""Takedown reports: released photos that now break consent, and the platform's answer.

Why this module exists: issue #4, retroactive re-check. When a parent withdraws consent
or a child's reference photo is enrolled, the school's released photos are checked
again (``moderation.recheck_school``); each photo that now shows a child without
consent for its audience is reported here, and the platform is asked to take it down
through the callback outbox (``"type": "takedown"``), signed and retried like a
decision callback.

A report is idempotent per open (attachment, student): a partial unique index allows
one open report per pair, so a re-check that runs twice, or two re-checks at once,
report a photo once; after it is resolved, a later re-check may report it again. The
callback's idempotency key names the report, so a redelivery carries the same key.

Errors (``moderation.errors``): NotFound ``unknown_post``, ``unknown_attachment``,
``unknown_student``, ``unknown_takedown``; Conflict ``already_resolved``;
InvalidInput ``invalid_field``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from moderation.errors import Conflict, InvalidInput, NotFound
from moderation.storage.callbacks import queue_event
from moderation.storage.posts import as_utc
from moderation.storage.roster import get_student
from moderation.storage.tables import (
    Attachment,
    AuditEvent,
    Post,
    Student,
    TakedownReport,
    utcnow,
)

OPEN = "open"
RESOLVED = "resolved"
STATUSES = (OPEN, RESOLVED)
LIST_LIMIT = 500  # reports on one page


class TakedownReason(StrEnum):
    """What made a released photo break consent."""

    CONSENT_WITHDRAWN = "consent_withdrawn"  # a parent said no after the release
    REFERENCE_ADDED = "reference_added"  # a child without consent was enrolled later


@dataclass(frozen=True, slots=True)
class TakedownView:
    """A report as the API shows it; ``student_id`` is None once the student is erased."""

    id: int
    post_id: str
    attachment_id: str
    student_id: str | None
    reason: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


@dataclass(frozen=True, slots=True)
class TakedownOutcome:
    report: TakedownView
    created: bool  # False: an open report for this photo and child existed already
    callback_pk: int | None  # enqueue after commit


def _query(school_id: str) -> Select[TakedownReport, str, str, str]:
    student = aliased(Student)
    return (
        select(TakedownReport, Post.external_id, Attachment.external_id, student.external_id)
        .join(Post, Post.pk == TakedownReport.post_pk)
        .join(Attachment, Attachment.pk == TakedownReport.attachment_pk)
        .outerjoin(student, student.pk == TakedownReport.student_pk)
        .where(TakedownReport.school_id == school_id)
        .execution_options(populate_existing=True)  # see a resolution made in this session
    )


def _view(
    row: TakedownReport, post_id: str, attachment_id: str, student_id: str | None
) -> TakedownView:
    return TakedownView(
        id=row.pk,
        post_id=post_id,
        attachment_id=attachment_id,
        student_id=student_id,
        reason=row.reason,
        status=row.status,
        created_at=as_utc(row.created_at),
        resolved_at=as_utc(row.resolved_at) if row.resolved_at else None,
        resolved_by=row.resolved_by,
    )


def get_takedown(*, session: Session, school_id: str, report_id: int) -> TakedownView:
    found = session.execute(_query(school_id).where(TakedownReport.pk == report_id)).first()
    if found is None:
        raise NotFound(f"takedown report {report_id} is not known", code="unknown_takedown")
    report, post_id, attachment_id, student_id = found
    return _view(report, post_id, attachment_id, student_id)


def _open_report(session: Session, attachment_pk: int, student_pk: int) -> TakedownReport | None:
    return session.scalars(
        select(TakedownReport).where(
            TakedownReport.attachment_pk == attachment_pk,
            TakedownReport.student_pk == student_pk,
            TakedownReport.status == OPEN,
        )
    ).first()


def report_takedown(
    *,
    session: Session,
    school_id: str,
    post_pk: int,
    attachment_id: str,
    student_id: str,
    reason: TakedownReason | str,
    now: datetime | None = None,
) -> TakedownOutcome:
    """Report one released photo for one child, once while open, and queue the callback.

    The callback (``"type": "takedown"``) goes to the post's callback URL or the
    school's webhook; the caller commits, then enqueues ``callback_pk``.
    """
    reason = TakedownReason(reason)
    now = now or utcnow()
    post = session.get(Post, post_pk)
    if post is None or post.school_id != school_id:
        raise NotFound(f"post {post_pk} is not known", code="unknown_post")
    attachment = next((a for a in post.attachments if a.external_id == attachment_id), None)
    if attachment is None:
        raise NotFound(
            f"post {post.external_id!r} has no attachment {attachment_id!r}",
            code="unknown_attachment",
        )
    student = get_student(session=session, school_id=school_id, student_id=student_id)
    existing = _open_report(session, attachment.pk, student.pk)
    if existing is None:
        try:
            with session.begin_nested():
                report = TakedownReport(
                    school_id=school_id,
                    post_pk=post.pk,
                    attachment_pk=attachment.pk,
                    student_pk=student.pk,
                    reason=reason.value,
                    status=OPEN,
                    created_at=now,
                )
                session.add(report)
                session.flush()
        except IntegrityError:  # a concurrent re-check reported it first
            existing = _open_report(session, attachment.pk, student.pk)
            if existing is None:
                raise
    if existing is not None:
        view = _view(existing, post.external_id, attachment.external_id, student.external_id)
        return TakedownOutcome(view, created=False, callback_pk=None)

    view = _view(report, post.external_id, attachment.external_id, student.external_id)
    session.add(
        AuditEvent(
            school_id=school_id,
            at=now,
            actor="auto",
            action="takedown.reported",
            post_pk=post.pk,
            detail={
                "takedown_id": report.pk,
                "attachment_id": attachment.external_id,
                "student_id": student.external_id,
                "reason": reason.value,
            },
        )
    )
    callback_pk = queue_event(
        session=session,
        post=post,
        idempotency_key=f"{school_id}:{post.external_id}:takedown:{report.pk}",
        payload={
            "event": "post.takedown",
            "type": "takedown",
            "school_id": school_id,
            "takedown_id": report.pk,
            "post_id": post.external_id,
            "attachment_id": attachment.external_id,
            "student_id": student.external_id,
            "reason": reason.value,
            "created_at": view.created_at.isoformat(),
        },
    )
    return TakedownOutcome(view, created=True, callback_pk=callback_pk)


def list_takedowns(
    *, session: Session, school_id: str, status: str | None = None, limit: int = LIST_LIMIT
) -> list[TakedownView]:
    """The school's reports, oldest first; ``status`` filters (open | resolved)."""
    query = _query(school_id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(
                f"status is one of {', '.join(STATUSES)}, not {status!r}", code="invalid_field"
            )
        query = query.where(TakedownReport.status == status)
    rows = session.execute(
        query.order_by(TakedownReport.created_at, TakedownReport.pk).limit(limit)
    ).all()
    return [_view(report, post, att, student) for report, post, att, student in rows]


def resolve_takedown(
    *, session: Session, school_id: str, report_id: int, by: str, now: datetime | None = None
) -> TakedownView:
    """The platform took the photo down (or decided otherwise): close the report once."""
    now = now or utcnow()
    current = get_takedown(session=session, school_id=school_id, report_id=report_id)
    closed = session.execute(
        update(TakedownReport)
        .where(
            TakedownReport.pk == report_id,
            TakedownReport.school_id == school_id,
            TakedownReport.status == OPEN,
        )
        .values(status=RESOLVED, resolved_at=now, resolved_by=by[:128])
        .returning(TakedownReport.pk, TakedownReport.post_pk)
        .execution_options(synchronize_session=False)
    ).first()
    if closed is None:
        raise Conflict(
            f"takedown report {report_id} was resolved already",
            code="already_resolved",
            resolved_by=current.resolved_by,
        )
    session.add(
        AuditEvent(
            school_id=school_id,
            at=now,
            actor=by[:128],
            action="takedown.resolved",
            post_pk=closed.post_pk,
            detail={"takedown_id": report_id, "attachment_id": current.attachment_id},
        )
    )
    session.flush()
    return get_takedown(session=session, school_id=school_id, report_id=report_id)
