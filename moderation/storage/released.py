"""The released copy of an attachment: what the platform may publish, and only that.

The worker writes ``Attachment.released_data`` (metadata stripped, faces blurred where
the decision says so). The copy is served only while the latest decision releases that
attachment: a copy written before a later rejection, or for an attachment held on its
own, stays unavailable. Retention (``moderation.storage.retention``) purges the bytes
and stamps ``posts.purged_at``; a purged copy is gone for good.

Errors (``moderation.errors``): NotFound ``unknown_post``, ``unknown_attachment``;
Conflict ``attachment_not_released``, ``released_copy_missing``; Gone
``attachment_purged``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from moderation.errors import Conflict, Gone, NotFound
from moderation.storage.posts import get_post, latest_decision


@dataclass(frozen=True, slots=True)
class ReleasedCopy:
    data: bytes
    content_type: str
    blurred: bool  # the decision asked for faces to be blurred in this copy


def released_copy(
    *, session: Session, school_id: str, post_id: str, attachment_id: str
) -> ReleasedCopy:
    post = get_post(session=session, school_id=school_id, post_id=post_id)
    attachment = next((a for a in post.attachments if a.external_id == attachment_id), None)
    if attachment is None:
        raise NotFound(
            f"post {post_id!r} has no attachment {attachment_id!r}", code="unknown_attachment"
        )
    decision = latest_decision(session=session, post_pk=post.pk)
    verdict = next(
        (a for a in (decision.attachments if decision else []) if a.get("id") == attachment_id),
        None,
    )
    if (
        decision is None
        or decision.action != "release"
        or verdict is None
        or (verdict.get("action") != "release")
    ):
        raise Conflict(
            f"attachment {attachment_id!r} of post {post_id!r} is not released",
            code="attachment_not_released",
        )
    if post.purged_at is not None or attachment.released_data is None:
        if post.purged_at is not None or attachment.data is None:
            raise Gone(
                f"attachment {attachment_id!r} was purged after the retention period",
                code="attachment_purged",
            )
        raise Conflict(
            f"no released copy of attachment {attachment_id!r} has been written",
            code="released_copy_missing",
        )
    return ReleasedCopy(
        data=attachment.released_data,
        content_type=attachment.content_type,
        blurred=bool(verdict.get("blur", False)),
    )
