"""Request and response bodies of the photo gate's endpoints: reference photos, the
image block list, removals and takedown reports (a schema family per noun, as in
``moderation.schemas``). No response carries a face descriptor.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, StringConstraints, model_validator

from moderation.schemas import ExternalId, Strict

# Limits apply to the text as sent, as the OpenAPI schema says; the value is stored
# stripped (``moderation.schemas._stripped`` says why not ``strip_whitespace``).
Note = Annotated[str, StringConstraints(max_length=500), AfterValidator(str.strip)]
Actor = ExternalId
ContentType = Annotated[str, StringConstraints(max_length=100)]


class ReferencePhotoCreate(Strict):
    """A photo of one child, base64; only the face descriptor made from it is kept."""

    photo: str
    content_type: ContentType
    enrolled_by: Actor


class ReferencePublic(BaseModel):
    """An enrolled reference: who enrolled it, when and with which model (never the data)."""

    id: int
    student_id: str
    model: str
    enrolled_by: str
    source: str
    enrolled_at: str


class ReferencesPublic(BaseModel):
    data: list[ReferencePublic]
    count: int


class BlocklistCreate(Strict):
    """An image to block: the image itself (base64 and its type) or its 16-hex pHash."""

    photo: str | None = None
    content_type: ContentType | None = None
    phash: Annotated[str, StringConstraints(max_length=32), AfterValidator(str.strip)] | None = None
    note: Note | None = None
    added_by: Actor = "api"

    @model_validator(mode="after")
    def _one_image(self) -> BlocklistCreate:
        if (self.photo is None) == (self.phash is None):
            raise ValueError("give either photo (with content_type) or phash")
        if self.photo is not None and not self.content_type:
            raise ValueError("a photo needs its content_type")
        return self


class BlocklistEntryPublic(BaseModel):
    """One blocked image: its pHash and how many crop variants are stored with it."""

    id: str
    phash: str
    variants: int  # stored hashes: 1 for a pHash given directly, 9 for an image
    note: str | None
    added_by: str
    added_at: str


class BlocklistPublic(BaseModel):
    data: list[BlocklistEntryPublic]
    count: int


class RemovalCreate(Strict):
    """The platform took a released post down; its photos go on the removed list."""

    reason: Note = ""
    by: Actor


class RemovalPublic(BaseModel):
    post_id: str
    removed_hashes: int  # hashes of the post's photos now on the removed list


class TakedownPublic(BaseModel):
    """A released photo that now breaks consent; ``student_id`` is null once erased."""

    id: int
    post_id: str
    attachment_id: str
    student_id: str | None
    reason: str  # consent_withdrawn | reference_added
    status: str  # open | resolved
    created_at: str
    resolved_at: str | None
    resolved_by: str | None


class TakedownsPublic(BaseModel):
    data: list[TakedownPublic]
    count: int


class TakedownResolve(Strict):
    by: Actor
