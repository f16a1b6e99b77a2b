"""The API's request and response bodies: a schema family per noun.

``*Create``/``*In`` are what the platform sends, ``*Public`` what we answer. Limits that
need their own error code (text length, attachment count and size, base64) are checked
in ``moderation.storage.posts`` so that each gets a precise code, not a generic 422.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from moderation.domain import AuthorRole, ChannelType, PostStatus


def _stripped(value: str) -> str:
    """Ids and names are stored without surrounding whitespace, and never blank. The
    length limits apply to the text as sent, as the OpenAPI schema says (Pydantic's
    ``strip_whitespace`` checks them after stripping: 129 characters passed as 128)."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_stripped)
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_stripped)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentScope(StrEnum):
    """Uses of a child's photos and data that parents consent to (POLICY.md rule 2)."""

    APP = "app"
    NEWSLETTER = "newsletter"
    SCHOOL_GUIDE = "school_guide"
    WEBSITE = "website"
    SOCIAL_MEDIA = "social_media"


class StaffRole(StrEnum):
    TEACHER = "teacher"
    STAFF = "staff"
    ADMIN = "admin"


# --- posts -------------------------------------------------------------------------


class ChannelIn(Strict):
    """Where the post will appear: a class group, a kindgesprek (per student), the school."""

    type: ChannelType
    id: ExternalId


class AuthorIn(Strict):
    id: ExternalId
    role: AuthorRole


class AttachmentIn(Strict):
    """One photo, base64-encoded."""

    id: ExternalId
    content_type: Annotated[str, StringConstraints(max_length=100)]
    data: str


class PostCreate(Strict):
    """A post the platform wants to publish; the school comes from the API key."""

    id: ExternalId
    channel: ChannelIn
    author: AuthorIn
    text: str = ""
    attachments: list[AttachmentIn] = Field(default_factory=list)
    tagged_students: list[ExternalId] = Field(default_factory=list, max_length=200)
    callback_url: Annotated[str, StringConstraints(max_length=2048)] | None = None


class ReasonPublic(BaseModel):
    code: str
    category: str | None
    score: float | None
    spans: list[tuple[int, int]]
    message_nl: str
    message_en: str


class AttachmentDecisionPublic(BaseModel):
    id: str
    action: str
    reasons: list[ReasonPublic]
    blur: bool = False  # release a copy with non-consenting children blurred


class NoticePublic(BaseModel):
    """A reminder for the author (sick reports, urgent matters, school hours)."""

    code: str
    message_nl: str
    message_en: str


class DecisionPublic(BaseModel):
    """The automatic or latest human decision on a post."""

    action: str
    reasons: list[ReasonPublic]
    attachments: list[AttachmentDecisionPublic]
    notices: list[NoticePublic]
    decided_by: str
    decided_at: str


class PostPublic(BaseModel):
    """A post's state as the platform sees it."""

    id: str
    status: PostStatus
    decision: DecisionPublic | None = None


# --- roster ------------------------------------------------------------------------


class GroupIn(Strict):
    id: ExternalId
    name: Name


class StudentIn(Strict):
    id: ExternalId
    name: Name
    group_id: ExternalId | None = None


class StaffIn(Strict):
    id: ExternalId
    name: Name
    role: StaffRole = StaffRole.TEACHER
    group_ids: list[ExternalId] = Field(default_factory=list)


class ParentIn(Strict):
    id: ExternalId
    name: Name
    student_ids: list[ExternalId] = Field(default_factory=list)


class ConsentIn(Strict):
    """One parent's answer for one child and one scope; appended to the history."""

    student_id: ExternalId
    parent_id: ExternalId
    scope: ConsentScope
    granted: bool


class RosterIn(Strict):
    """A whole or partial roster; everything in it is created or updated, nothing removed."""

    groups: list[GroupIn] = Field(default_factory=list)
    students: list[StudentIn] = Field(default_factory=list)
    staff: list[StaffIn] = Field(default_factory=list)
    parents: list[ParentIn] = Field(default_factory=list)
    consent: list[ConsentIn] = Field(default_factory=list)


class RosterResult(BaseModel):
    groups: int
    students: int
    staff: int
    parents: int
    consent: int
    # (student id, scope) whose consent went from yes to no: not part of the answer; the
    # caller queues the re-check of the school's released photos after the commit
    withdrawn: list[tuple[str, str]] = Field(default_factory=list, exclude=True)


class ConsentAnswerPublic(BaseModel):
    parent_id: str
    scope: ConsentScope
    granted: bool
    source: str
    recorded_at: str


class ConsentPublic(BaseModel):
    """Per scope: granted only if every parent's latest answer is yes ("no" wins)."""

    student_id: str
    scopes: dict[ConsentScope, bool]
    history: list[ConsentAnswerPublic]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, object] = Field(default_factory=dict)


class ErrorPublic(BaseModel):
    """Every 4xx answer has this shape."""

    error: ErrorBody
