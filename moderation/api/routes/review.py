"""The review queue over the API: the platform acts for a staff member.

Authenticated by the school's API key; the acting staff member is ``reviewer_id``, and
the roster decides their role and groups, exactly as on the review page. A post outside
that person's groups answers 404 ``unknown_post``, as if it did not exist. Reports and
appeals come from parents and staff through the platform. The audit export is for the
school's privacy officer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from moderation.api.deps import EnqueuerDep, SchoolDep, SessionDep, SettingsDep
from moderation.api.routes.posts import ERRORS
from moderation.config import Settings
from moderation.domain import AuthorRole
from moderation.review.schemas import (
    AppealIn,
    FlagPublic,
    QueueAttachmentPublic,
    QueueItemPublic,
    QueuePublic,
    QueueReasonPublic,
    ReportIn,
    ReviewIn,
    ReviewPublic,
)
from moderation.storage import review
from moderation.storage.audit import csv_lines, iter_audit, parse_period
from moderation.storage.db import get_sessionmaker
from moderation.storage.posts import as_utc
from moderation.storage.tables import Flag

router = APIRouter(prefix="/v1", tags=["review"], responses=ERRORS)


def flag_public(flag: Flag, post_id: str) -> FlagPublic:
    return FlagPublic(
        id=flag.pk,
        post_id=post_id,
        kind=flag.kind,
        reason=flag.reason,
        status=flag.status,
        created_at=as_utc(flag.created_at).isoformat(),
        escalated_at=as_utc(flag.escalated_at).isoformat() if flag.escalated_at else None,
        escalation=flag.escalation,
        reports=len(flag.detail.get("reports", [])),
    )


def highlights(item: review.QueueItem) -> list[tuple[int, int]]:
    spans, at = [], 0
    for segment in item.segments:
        if segment.marked:
            spans.append((at, at + len(segment.text)))
        at += len(segment.text)
    return spans


def item_public(item: review.QueueItem) -> QueueItemPublic:
    return QueueItemPublic(
        flag_id=item.flag_pk,
        kind=item.kind,
        reason=item.flag_reason,
        post_id=item.post_id,
        text=item.text,
        highlights=highlights(item),
        reasons=[
            QueueReasonPublic(
                code=r.code,
                category=r.category,
                score=r.score,
                message_nl=r.message_nl,
                message_en=r.message_en,
            )
            for r in item.reasons
        ],
        scores=item.scores,
        severity=item.severity,
        attachments=[
            QueueAttachmentPublic(id=a.id, content_type=a.content_type, action=a.action)
            for a in item.attachments
        ],
        author={"id": item.author_id, "role": item.author_role, "name": item.author_name},
        channel={"type": item.channel_type, "id": item.channel_id, "name": item.channel_name},
        group_id=item.group_id,
        flagged_at=item.flagged_at.isoformat(),
        waited_minutes=int(item.waited_min),
        school_minutes=int(item.school_min),
        escalation=item.escalation,
        detail=item.detail,
    )


@router.get("/review/queue", response_model=QueuePublic, summary="A reviewer's queue")
def read_queue(
    school: SchoolDep,
    session: SessionDep,
    reviewer_id: Annotated[str, Query(min_length=1, max_length=128)],
    category: str | None = None,
    group: str | None = None,
    author_role: AuthorRole | None = None,
    kind: review.FlagKind | None = None,
    escalated: bool = False,
) -> QueuePublic:
    """Open flags of the reviewer's groups (admins: the whole school), oldest first."""
    reviewer = review.reviewer_from_roster(
        session=session, school_id=school.id, staff_id=reviewer_id
    )
    items = review.list_queue(
        session=session,
        reviewer=reviewer,
        filters=review.QueueFilters(
            category=category,
            group_id=group,
            author_role=author_role.value if author_role else None,
            kind=kind.value if kind else None,
            escalated_only=escalated,
        ),
    )
    return QueuePublic(data=[item_public(i) for i in items], count=len(items))


@router.post(
    "/posts/{post_id}/review", response_model=ReviewPublic, summary="Decide a flagged post"
)
def review_post(
    post_id: str,
    body: ReviewIn,
    school: SchoolDep,
    session: SessionDep,
    enqueuer: EnqueuerDep,
) -> ReviewPublic:
    """Release, reject (with a reason for the author), ask to rephrase, or release with
    blur. Closes the flag, appends a human decision and sends the platform the callback.
    A flag decided already answers **409** ``already_decided``."""
    reviewer = review.reviewer_from_roster(
        session=session, school_id=school.id, staff_id=body.reviewer_id
    )
    outcome = review.review_post(
        session=session,
        reviewer=reviewer,
        action=body.action,
        reason_code=body.reason_code,
        reason_text=body.reason,
        post_id=post_id,
        via="api",
    )
    session.commit()
    if outcome.callback_pk is not None:
        enqueuer.callback(outcome.callback_pk)
    return ReviewPublic(
        post=outcome.public, action=outcome.action, sequence=outcome.sequence, blur=outcome.blur
    )


@router.post(
    "/posts/{post_id}/reports",
    status_code=201,
    response_model=FlagPublic,
    summary="Report a released post",
)
def report_post(post_id: str, body: ReportIn, school: SchoolDep, session: SessionDep) -> FlagPublic:
    """The post enters the review queue (flag reason ``reported``) and **stays released**
    until a reviewer rejects it. More reports join the same open flag."""
    flag = review.report_post(
        session=session,
        school_id=school.id,
        post_id=post_id,
        reporter_id=body.reporter_id,
        reporter_role=body.reporter_role.value,
        text=body.reason,
    )
    session.commit()
    return flag_public(flag, post_id)


@router.post(
    "/posts/{post_id}/appeals",
    status_code=201,
    response_model=FlagPublic,
    summary="Appeal a rejection (the author)",
)
def appeal_post(post_id: str, body: AppealIn, school: SchoolDep, session: SessionDep) -> FlagPublic:
    """Only the author of a rejected post, once per post. Decided by a reviewer other
    than the one who rejected it, where the group has another."""
    flag = review.appeal_post(
        session=session,
        school_id=school.id,
        post_id=post_id,
        author_id=body.author_id,
        text=body.text,
    )
    session.commit()
    return flag_public(flag, post_id)


def stream_audit_csv(settings: Settings, school_id: str, start: str, end: str) -> Iterator[str]:
    """The CSV lines from a session of its own (the request's is closed by then)."""
    lo, hi = parse_period(start, end)
    with get_sessionmaker(settings.database_url)() as session:
        yield from csv_lines(iter_audit(session=session, school_id=school_id, start=lo, end=hi))


@router.get(
    "/audit.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The audit trail as CSV"}},
    summary="Audit trail export (CSV) for the privacy officer",
)
def audit_csv(
    school: SchoolDep,
    settings: SettingsDep,
    start: Annotated[str, Query(alias="from", description="YYYY-MM-DD or ISO date-time")],
    end: Annotated[str, Query(alias="to", description="YYYY-MM-DD (inclusive) or date-time")],
) -> StreamingResponse:
    """Every audit event of the school in the period: who, when, what, why."""
    parse_period(start, end)  # a bad period is a 422 before the stream starts
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", f"audit-{school.id}-{start[:10]}-{end[:10]}.csv")
    return StreamingResponse(
        stream_audit_csv(settings, school.id, start, end),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
