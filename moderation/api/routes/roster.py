"""Roster and consent sync: the same operations as ``moderation admin import-roster``.

A consent answer that withdraws consent (yes to no) queues, after the commit, a re-check
of the school's released photos for that child (``Enqueuer.recheck``).
"""

from __future__ import annotations

from fastapi import APIRouter

from moderation.api.deps import EnqueuerDep, SchoolDep, SessionDep
from moderation.api.routes.posts import ERRORS
from moderation.schemas import (
    ConsentAnswerPublic,
    ConsentIn,
    ConsentPublic,
    GroupIn,
    ParentIn,
    RosterIn,
    RosterResult,
    StaffIn,
    StudentIn,
)
from moderation.storage import roster
from moderation.storage.posts import as_utc

router = APIRouter(prefix="/v1", tags=["roster"], responses=ERRORS)


def _apply(
    session: SessionDep, enqueuer: EnqueuerDep, school_id: str, roster_in: RosterIn
) -> RosterResult:
    result = roster.apply_roster(
        session=session, school_id=school_id, roster=roster_in, source="api"
    )
    session.commit()
    # a child whose consent went from yes to no may be in photos released before
    enqueuer.recheck_withdrawn(school_id, result.withdrawn)
    return result


@router.post("/roster", response_model=RosterResult, summary="Create or update a roster")
def post_roster(
    roster_in: RosterIn, school: SchoolDep, session: SessionDep, enqueuer: EnqueuerDep
) -> RosterResult:
    """Groups, students, staff, parents and consent answers in one transaction."""
    return _apply(session, enqueuer, school.id, roster_in)


@router.put("/groups", response_model=RosterResult)
def put_group(
    group: GroupIn, school: SchoolDep, session: SessionDep, enqueuer: EnqueuerDep
) -> RosterResult:
    return _apply(session, enqueuer, school.id, RosterIn(groups=[group]))


@router.put("/students", response_model=RosterResult)
def put_student(
    student: StudentIn, school: SchoolDep, session: SessionDep, enqueuer: EnqueuerDep
) -> RosterResult:
    return _apply(session, enqueuer, school.id, RosterIn(students=[student]))


@router.put("/staff", response_model=RosterResult)
def put_staff(
    staff: StaffIn, school: SchoolDep, session: SessionDep, enqueuer: EnqueuerDep
) -> RosterResult:
    return _apply(session, enqueuer, school.id, RosterIn(staff=[staff]))


@router.put("/parents", response_model=RosterResult)
def put_parent(
    parent: ParentIn, school: SchoolDep, session: SessionDep, enqueuer: EnqueuerDep
) -> RosterResult:
    return _apply(session, enqueuer, school.id, RosterIn(parents=[parent]))


@router.post("/consent", response_model=RosterResult, summary="Record a parent's answer")
def post_consent(
    consent: ConsentIn, school: SchoolDep, session: SessionDep, enqueuer: EnqueuerDep
) -> RosterResult:
    """A change from yes to no queues a re-check of the school's released photos."""
    return _apply(session, enqueuer, school.id, RosterIn(consent=[consent]))


@router.get("/students/{student_id}/consent", response_model=ConsentPublic)
def get_consent(student_id: str, school: SchoolDep, session: SessionDep) -> ConsentPublic:
    """Current consent per scope ("no" wins) and every answer ever given."""
    student = roster.get_student(session=session, school_id=school.id, student_id=student_id)
    history = roster.consent_history(session=session, student=student)
    return ConsentPublic(
        student_id=student.external_id,
        scopes=roster.current_consent(history),
        history=[
            ConsentAnswerPublic(
                parent_id=parent_id,
                scope=answer.scope,
                granted=answer.granted,
                source=answer.source,
                recorded_at=as_utc(answer.recorded_at).isoformat(),
            )
            for parent_id, answer in history
        ],
    )
