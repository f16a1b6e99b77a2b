"""Face references (enrolled descriptors), the consent register the photo check reads,
and the erasure of a student (GDPR art. 17).

Why this module exists: POLICY.md rule 2. A photo may be shown to an audience only if
every recognisable child in it has consent for that audience; the photo check
(``moderation.photo_check``) needs, per student of the school, whether they have that
consent and their enrolled face descriptors. :func:`consent_register` builds that list
in two queries, whatever the size of the school.

A descriptor is biometric data: we store the 128 floats (little-endian float32), never
the photo, with who enrolled it, how and when. Enrolment and erasure write audit events
that name the student and the reference ids, never the descriptor. Erasing a student
removes the student row, their consent answers, references and tags; takedown reports
keep the photo but lose the link to the child; decisions and the audit trail stay.

Errors (``moderation.errors``): NotFound ``unknown_student``, ``unknown_reference``;
InvalidInput ``invalid_embedding``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Executable, delete, select, update
from sqlalchemy.orm import Session

from moderation.domain import ChildConsent
from moderation.errors import InvalidInput, NotFound
from moderation.storage.posts import as_utc
from moderation.storage.roster import get_student
from moderation.storage.tables import (
    AuditEvent,
    ConsentAnswer,
    FaceReference,
    PostTaggedStudent,
    Student,
    TakedownReport,
)

EMBEDDING_DIMS = 128  # floats in a dlib face descriptor
_EMBEDDING = struct.Struct(f"<{EMBEDDING_DIMS}f")  # 512 bytes, platform independent
SOURCES = ("api", "cli")


@dataclass(frozen=True, slots=True)
class ReferenceInfo:
    """What may be shown about a reference: everything except the descriptor."""

    id: int
    student_id: str
    model: str
    enrolled_by: str
    source: str
    enrolled_at: datetime


def pack_embedding(embedding: Sequence[float]) -> bytes:
    """128 finite floats as little-endian float32; InvalidInput ``invalid_embedding``."""
    values = [float(v) for v in embedding]
    if len(values) != EMBEDDING_DIMS or not all(math.isfinite(v) for v in values):
        raise InvalidInput(
            f"a face descriptor is {EMBEDDING_DIMS} finite numbers", code="invalid_embedding"
        )
    return _EMBEDDING.pack(*values)


def unpack_embedding(data: bytes) -> tuple[float, ...]:
    return _EMBEDDING.unpack(data)


def _info(row: FaceReference, student_id: str) -> ReferenceInfo:
    return ReferenceInfo(
        id=row.pk,
        student_id=student_id,
        model=row.model,
        enrolled_by=row.enrolled_by,
        source=row.source,
        enrolled_at=as_utc(row.enrolled_at),
    )


def enrol_reference(
    *,
    session: Session,
    school_id: str,
    student_id: str,
    embedding: Sequence[float],
    model: str,
    enrolled_by: str,
    source: str,
) -> ReferenceInfo:
    """Store one descriptor for the student, with an audit event; commit is the caller's."""
    if source not in SOURCES:
        raise ValueError(f"source is one of {SOURCES}, not {source!r}")
    student = get_student(session=session, school_id=school_id, student_id=student_id)
    row = FaceReference(
        school_id=school_id,
        student_pk=student.pk,
        embedding=pack_embedding(embedding),
        model=model,
        enrolled_by=enrolled_by,
        source=source,
    )
    session.add(row)
    session.flush()
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=f"{source}:{enrolled_by}",
            action="reference.enrolled",
            detail={"student_id": student.external_id, "reference_id": row.pk, "model": model},
        )
    )
    session.flush()
    return _info(row, student.external_id)


def list_references(*, session: Session, school_id: str, student_id: str) -> list[ReferenceInfo]:
    """The student's references, oldest first, without their descriptors."""
    student = get_student(session=session, school_id=school_id, student_id=student_id)
    rows = session.scalars(
        select(FaceReference)
        .where(FaceReference.school_id == school_id, FaceReference.student_pk == student.pk)
        .order_by(FaceReference.enrolled_at, FaceReference.pk)
    ).all()
    return [_info(row, student.external_id) for row in rows]


def erase_references(
    *,
    session: Session,
    school_id: str,
    student_id: str,
    actor: str,
    reference_id: int | None = None,
) -> list[int]:
    """Delete the student's references (or the one named); the ids erased, audited.

    Naming a reference that is not the student's is NotFound ``unknown_reference``;
    erasing all of a student who has none erases nothing and is not an error.
    """
    student = get_student(session=session, school_id=school_id, student_id=student_id)
    query = delete(FaceReference).where(
        FaceReference.school_id == school_id, FaceReference.student_pk == student.pk
    )
    if reference_id is not None:
        query = query.where(FaceReference.pk == reference_id)
    erased = sorted(session.scalars(query.returning(FaceReference.pk)).all())
    if reference_id is not None and not erased:
        raise NotFound(
            f"reference {reference_id} of student {student_id!r} is not known",
            code="unknown_reference",
        )
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=actor,
            action="reference.erased",
            detail={"student_id": student.external_id, "reference_ids": erased},
        )
    )
    session.flush()
    return erased


@dataclass(frozen=True, slots=True)
class StudentErasure:
    """What erasing a student removed (counts), as the audit event records it."""

    student_id: str
    consent_answers: int
    references: int
    tags: int
    takedowns_unlinked: int


def erase_student(
    *, session: Session, school_id: str, student_id: str, actor: str
) -> StudentErasure:
    """Delete the student and everything that names them; decisions and audit stay.

    The rows are deleted explicitly (not only by ON DELETE CASCADE), so the audit event
    can count them and the erasure does not depend on SQLite's foreign-key pragma. The
    audit event keeps the student's id, not their name.
    """
    student = get_student(session=session, school_id=school_id, student_id=student_id)
    pk = student.pk

    def count(statement: Executable) -> int:
        return len(session.execute(statement).all())

    answers = count(
        delete(ConsentAnswer).where(ConsentAnswer.student_pk == pk).returning(ConsentAnswer.pk)
    )
    references = count(
        delete(FaceReference).where(FaceReference.student_pk == pk).returning(FaceReference.pk)
    )
    tags = count(
        delete(PostTaggedStudent)
        .where(PostTaggedStudent.student_pk == pk)
        .returning(PostTaggedStudent.post_pk)
    )
    unlinked = count(
        update(TakedownReport)
        .where(TakedownReport.student_pk == pk)
        .values(student_pk=None)
        .returning(TakedownReport.pk)
    )
    session.execute(
        delete(Student).where(Student.pk == pk).execution_options(synchronize_session=False)
    )
    session.expunge(student)
    erasure = StudentErasure(
        student_id=student_id,
        consent_answers=answers,
        references=references,
        tags=tags,
        takedowns_unlinked=unlinked,
    )
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=actor,
            action="student.erased",
            detail={
                "student_id": student_id,
                "consent_answers": answers,
                "references": references,
                "tags": tags,
                "takedowns_unlinked": unlinked,
            },
        )
    )
    session.flush()
    return erasure


def consent_register(
    *, session: Session, school_id: str, scope: str, group_pk: int | None
) -> list[ChildConsent]:
    """Every student of the school as the photo check sees them for ``scope``.

    ``consented``: some parent answered for the scope and every parent's latest answer
    is yes (as :func:`moderation.storage.roster.current_consent`). ``in_group``: the
    student is in ``group_pk`` (never, for a school-wide post). Two queries: the
    students with their references, and the school's answers for the scope.
    """
    students: dict[int, tuple[str, int | None]] = {}
    references: dict[int, list[tuple[float, ...]]] = {}
    rows = session.execute(
        select(Student.pk, Student.external_id, Student.group_pk, FaceReference.embedding)
        .outerjoin(
            FaceReference,
            (FaceReference.student_pk == Student.pk) & (FaceReference.school_id == school_id),
        )
        .where(Student.school_id == school_id)
        .order_by(Student.external_id, FaceReference.pk)
    )
    for pk, external_id, student_group, embedding in rows:
        students[pk] = (external_id, student_group)
        refs = references.setdefault(pk, [])
        if embedding is not None:
            refs.append(unpack_embedding(embedding))

    latest: dict[tuple[int, int], bool] = {}  # (student, parent) -> latest answer
    answers = session.execute(
        select(ConsentAnswer.student_pk, ConsentAnswer.parent_pk, ConsentAnswer.granted)
        .where(ConsentAnswer.school_id == school_id, ConsentAnswer.scope == scope)
        .order_by(ConsentAnswer.recorded_at, ConsentAnswer.pk)
    )
    for student_pk, parent_pk, granted in answers:  # oldest first: later ones overwrite
        latest[(student_pk, parent_pk)] = granted
    by_student: dict[int, list[bool]] = {}
    for (student_pk, _), granted in latest.items():
        by_student.setdefault(student_pk, []).append(granted)

    return [
        ChildConsent(
            student_id=external_id,
            consented=bool(by_student.get(pk)) and all(by_student[pk]),
            in_group=group_pk is not None and student_group == group_pk,
            references=tuple(references.get(pk, ())),
        )
        for pk, (external_id, student_group) in students.items()
    ]
