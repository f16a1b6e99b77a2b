"""Request and response bodies of the review API (``moderation.api.routes.review``).

``*In`` is what the platform sends, ``*Public`` what we answer, as in
``moderation.schemas``. The acting staff member is named in the body (``reviewer_id``)
or the query; the school comes from the API key, and the roster decides what that
person may see and decide.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from moderation.domain import AuthorRole
from moderation.schemas import ExternalId, PostPublic, Strict
from moderation.storage.review import MAX_REASON_CHARS, MAX_REPORT_CHARS, ReviewAction

ReasonText = Annotated[str, StringConstraints(max_length=MAX_REASON_CHARS)]
LongText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_REPORT_CHARS, strip_whitespace=True)
]


class ReviewIn(Strict):
    """A reviewer's decision on a post in the queue."""

    action: ReviewAction
    reviewer_id: ExternalId
    reason_code: Annotated[str, StringConstraints(max_length=32)] | None = None  # a template
    reason: ReasonText | None = None  # free text for the author


class ReviewPublic(BaseModel):
    """The post after the decision, and the decision's sequence number."""

    post: PostPublic
    action: ReviewAction
    sequence: int
    blur: bool


class ReportIn(Strict):
    """Someone doubts a released post (POLICY.md rule 4)."""

    reporter_id: ExternalId
    reporter_role: AuthorRole
    reason: LongText


class AppealIn(Strict):
    """The author objects to the rejection of their post."""

    author_id: ExternalId
    text: LongText


class FlagPublic(BaseModel):
    """An item in the review queue."""

    id: int
    post_id: str
    kind: str  # hold | report | appeal
    reason: str
    status: str  # open | closed
    created_at: str
    escalated_at: str | None
    escalation: str | None
    reports: int


class QueueReasonPublic(BaseModel):
    code: str
    category: str | None
    score: float | None
    message_nl: str
    message_en: str


class QueueAttachmentPublic(BaseModel):
    id: str
    content_type: str
    action: str


class QueueItemPublic(BaseModel):
    """One open flag as a reviewer sees it (text, highlights, scores, waiting time)."""

    flag_id: int
    kind: str
    reason: str
    post_id: str
    text: str
    highlights: list[tuple[int, int]]
    reasons: list[QueueReasonPublic]
    scores: dict[str, float]
    severity: float | None
    attachments: list[QueueAttachmentPublic]
    author: dict[str, str | None]
    channel: dict[str, str | None]
    group_id: str | None
    flagged_at: str
    waited_minutes: int
    school_minutes: int
    escalation: str | None
    detail: dict[str, Any]


class QueuePublic(BaseModel):
    """The queue of one reviewer, oldest first."""

    data: list[QueueItemPublic]
    count: int
