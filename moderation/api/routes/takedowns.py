"""Takedown reports: released photos that now break consent (``moderation.storage.takedowns``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from moderation.api.deps import RowId, SchoolDep, SessionDep
from moderation.api.routes.posts import ERRORS
from moderation.photo_schemas import TakedownPublic, TakedownResolve, TakedownsPublic
from moderation.storage import takedowns

router = APIRouter(prefix="/v1/takedowns", tags=["takedowns"], responses=ERRORS)


def _public(view: takedowns.TakedownView) -> TakedownPublic:
    return TakedownPublic(
        id=view.id,
        post_id=view.post_id,
        attachment_id=view.attachment_id,
        student_id=view.student_id,
        reason=view.reason,
        status=view.status,
        created_at=view.created_at.isoformat(),
        resolved_at=view.resolved_at.isoformat() if view.resolved_at else None,
        resolved_by=view.resolved_by,
    )


@router.get("", response_model=TakedownsPublic, summary="Takedown reports, oldest first")
def list_takedowns(
    school: SchoolDep, session: SessionDep, status: Literal["open", "resolved"] | None = None
) -> TakedownsPublic:
    found = takedowns.list_takedowns(session=session, school_id=school.id, status=status)
    return TakedownsPublic(data=[_public(v) for v in found], count=len(found))


@router.post(
    "/{takedown_id}/resolve", response_model=TakedownPublic, summary="Resolve a takedown report"
)
def resolve_takedown(
    takedown_id: RowId, body: TakedownResolve, school: SchoolDep, session: SessionDep
) -> TakedownPublic:
    """**404** ``unknown_takedown``; **409** ``already_resolved``."""
    view = takedowns.resolve_takedown(
        session=session, school_id=school.id, report_id=takedown_id, by=body.by
    )
    session.commit()
    return _public(view)
