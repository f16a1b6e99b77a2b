"""The released copy of a photo: metadata stripped, faces blurred where decided."""

from __future__ import annotations

from fastapi import APIRouter, Response

from moderation.api.deps import SchoolDep, SessionDep
from moderation.schemas import ErrorPublic
from moderation.storage.released import released_copy

router = APIRouter(prefix="/v1/posts", tags=["posts"])


@router.get(
    "/{post_id}/attachments/{attachment_id}",
    responses={
        200: {"content": {"image/*": {}}, "description": "The released copy"},
        **{code: {"model": ErrorPublic} for code in (401, 404, 409, 410, 422, 429)},
    },
    response_class=Response,
    summary="The released copy of an attachment, for publication",
)
def get_released_attachment(
    post_id: str, attachment_id: str, school: SchoolDep, session: SessionDep
) -> Response:
    """Only while the latest decision releases the attachment (**409**
    ``attachment_not_released`` otherwise); **410** ``attachment_purged`` once retention
    removed it. Publish these bytes, not the original upload."""
    copy = released_copy(
        session=session, school_id=school.id, post_id=post_id, attachment_id=attachment_id
    )
    return Response(
        content=copy.data,
        media_type=copy.content_type,
        headers={
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{attachment_id[:64]}"',
            "X-Moderation-Blurred": "true" if copy.blurred else "false",
        },
    )
