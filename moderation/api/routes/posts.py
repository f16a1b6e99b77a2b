"""Posts: the platform hands us every post before it publishes it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from moderation.api.deps import EnqueuerDep, SchoolDep, SessionDep, SettingsDep
from moderation.config import Settings
from moderation.domain import PostStatus
from moderation.schemas import ErrorPublic, PostCreate, PostPublic
from moderation.storage.db import get_sessionmaker
from moderation.storage.posts import (
    MEDIA_CHECK,
    TEXT_CHECK,
    IntakeLimits,
    create_post,
    get_post,
    needed_checks,
    post_public,
)

router = APIRouter(prefix="/v1/posts", tags=["posts"])

WAIT_POLL_S = 0.05  # how often ?wait= looks for the decision

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 404, 409, 413, 415, 422, 429)
}


def _read_public(settings: Settings, school_id: str, post_id: str) -> PostPublic:
    with get_sessionmaker(settings.database_url)() as session:
        post = get_post(session=session, school_id=school_id, post_id=post_id)
        return post_public(session=session, post=post)


async def _wait_for_decision(
    settings: Settings, school_id: str, post_id: str, wait_s: float
) -> PostPublic:
    deadline = time.monotonic() + min(wait_s, settings.max_wait_s)
    while True:
        public = await run_in_threadpool(_read_public, settings, school_id, post_id)
        if public.status is not PostStatus.PENDING or time.monotonic() >= deadline:
            return public
        await asyncio.sleep(WAIT_POLL_S)


def _submit(
    settings: Settings,
    session: SessionDep,
    school_id: str,
    post_in: PostCreate,
    enqueuer: EnqueuerDep,
) -> tuple[PostPublic, bool]:
    limits = IntakeLimits(
        max_text_chars=settings.max_text_chars,
        max_attachments=settings.max_attachments,
        max_attachment_bytes=settings.max_attachment_bytes,
        max_video_bytes=settings.max_video_bytes,
    )
    intake = create_post(session=session, school_id=school_id, post_in=post_in, limits=limits)
    session.commit()
    if intake.created:
        checks = needed_checks(intake.post)
        enqueuer.post(intake.post.pk, text=TEXT_CHECK in checks, media=MEDIA_CHECK in checks)
        # just stored and queued: pending, with no decision to read back
        return PostPublic(id=intake.post.external_id, status=PostStatus.PENDING), True
    return post_public(session=session, post=intake.post), False


@router.post(
    "",
    status_code=202,
    response_model=PostPublic,
    responses={
        200: {"model": PostPublic, "description": "Decided within ?wait=, or sent before"},
        **ERRORS,
    },
    summary="Submit a post for moderation before publishing it",
)
async def submit_post(
    post_in: PostCreate,
    school: SchoolDep,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    response: Response,
    wait: Annotated[
        float, Query(ge=0, le=10, description="Seconds to wait for the decision (at most 10)")
    ] = 0,
) -> PostPublic:
    """Stores and queues the post, then answers **202** with status ``pending``.

    With ``?wait=N`` the answer waits up to N seconds for the decision; if it came, the
    answer is **200** with status ``released``, ``held`` or ``rejected``. Sending the same
    id and body again answers **200** with the stored post; the same id with another body
    is **409**.
    """
    public, created = await run_in_threadpool(
        _submit, settings, session, school.id, post_in, enqueuer
    )
    if wait > 0 and public.status is PostStatus.PENDING:
        public = await _wait_for_decision(settings, school.id, post_in.id, wait)
    if public.status is not PostStatus.PENDING or not created:
        response.status_code = 200
    return public


@router.get("/{post_id}", response_model=PostPublic, responses=ERRORS, summary="A post's state")
def read_post(post_id: str, school: SchoolDep, session: SessionDep) -> PostPublic:
    post = get_post(session=session, school_id=school.id, post_id=post_id)
    return post_public(session=session, post=post)
