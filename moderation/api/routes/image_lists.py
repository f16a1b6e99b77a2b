"""The image block list, and removals: the platform took a released post down.

Both feed the lists a new photo is checked against (``moderation.storage.image_hashes``):
a blocked or removed image posted again, resized, recompressed or cropped by 10%, is
caught by the media check.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from moderation.api.deps import SchoolDep, SessionDep, SettingsDep
from moderation.api.routes.posts import ERRORS
from moderation.photo_intake import decode_photo, image_hash_strings, read_photo
from moderation.photo_schemas import (
    BlocklistCreate,
    BlocklistEntryPublic,
    BlocklistPublic,
    RemovalCreate,
    RemovalPublic,
)
from moderation.storage import image_hashes
from moderation.storage.posts import get_post

router = APIRouter(prefix="/v1", tags=["image lists"], responses=ERRORS)


def _public(entry: image_hashes.HashEntry) -> BlocklistEntryPublic:
    return BlocklistEntryPublic(
        id=entry.entry,
        phash=entry.phash,
        variants=len(entry.hashes),
        note=entry.note,
        added_by=entry.added_by,
        added_at=entry.added_at.isoformat(),
    )


@router.post(
    "/image-blocklist",
    status_code=201,
    response_model=BlocklistEntryPublic,
    summary="Block an image (the image, or its pHash)",
)
def add_to_blocklist(
    body: BlocklistCreate, school: SchoolDep, session: SessionDep, settings: SettingsDep
) -> BlocklistEntryPublic:
    """With the image, its pHash and the 8 crop variants are stored, so 10% crops are
    caught too; a bare ``phash`` (16 hex characters) is stored as it is. **422**
    ``image_not_matchable`` for a blank or evenly shaded image, ``invalid_hash`` for a
    malformed pHash."""
    if body.photo is not None:
        data = decode_photo(body.photo, max_bytes=settings.max_attachment_bytes)
        image = read_photo(data, body.content_type or "", max_bytes=settings.max_attachment_bytes)
        hashes = image_hash_strings(image)
    else:
        hashes = [body.phash or ""]
    entry = image_hashes.block_image(
        session=session,
        school_id=school.id,
        hashes=hashes,
        note=body.note or None,
        added_by=body.added_by,
    )
    session.commit()
    return _public(entry)


@router.get("/image-blocklist", response_model=BlocklistPublic, summary="The block list")
def list_blocklist(school: SchoolDep, session: SessionDep) -> BlocklistPublic:
    entries = image_hashes.list_entries(
        session=session, school_id=school.id, list_name=image_hashes.BLOCKED
    )
    return BlocklistPublic(data=[_public(e) for e in entries], count=len(entries))


@router.delete(
    "/image-blocklist/{entry_id}", status_code=204, summary="Remove an image from the block list"
)
def delete_from_blocklist(
    entry_id: str, school: SchoolDep, session: SessionDep, by: str = "api"
) -> Response:
    """**404** ``unknown_entry``. Workers stop matching it at their next lookup."""
    image_hashes.delete_entry(
        session=session,
        school_id=school.id,
        list_name=image_hashes.BLOCKED,
        entry=entry_id,
        actor=f"api:{by[:100]}",
    )
    session.commit()
    return Response(status_code=204)


@router.post(
    "/posts/{post_id}/removal",
    response_model=RemovalPublic,
    summary="The platform took a released post down",
)
def remove_post(
    post_id: str, body: RemovalCreate, school: SchoolDep, session: SessionDep
) -> RemovalPublic:
    """The post's released photos go on the removed list, so a re-post is caught.
    **409** ``post_not_released`` if the post was never released. Repeating it is
    harmless."""
    post = get_post(session=session, school_id=school.id, post_id=post_id)
    count = image_hashes.mark_removed(session=session, post=post, reason=body.reason, by=body.by)
    session.commit()
    return RemovalPublic(post_id=post.external_id, removed_hashes=count)
