"""A school's image hash lists: what it released, what was removed, what it blocks.

Why this module exists: POLICY.md rule 10. The service remembers the perceptual hashes
(pHash, ``models.images.hashes``) of every photo it released, copies them to the
``removed`` list when the platform takes a post down, and keeps a block list per school,
so that a removed or blocked photo posted again, resized, recompressed or cropped by
10%, is caught (the workers look up ``removed`` and ``blocked``; ``workers.hash_lists``).

An image is stored as up to 9 rows sharing an ``entry`` id: variant 0 is the pHash of
the whole image, 1-8 those of its crop variants, in ``image_hashes()``'s order. This
module takes the hashes as 16-character hex strings and never imports the image code,
so the API process stays light; the caller hashes.

A released image is remembered once per list: ``(list, attachment, variant)`` is
unique and written with insert-or-ignore, so a post released twice (automatically, then
again after a report) or removed twice stores nothing new. Deleting a block-list entry
bumps ``schools.hash_lists_generation`` in the same transaction: a worker's cached index
rebuilds when it sees the new generation, instead of only adding new rows.

Errors (``moderation.errors``): NotFound ``unknown_entry``; Conflict
``post_not_released``; InvalidInput ``invalid_hash``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from moderation.errors import Conflict, InvalidInput, NotFound
from moderation.storage.posts import MEDIA_CHECK, as_utc, latest_decision
from moderation.storage.tables import (
    Attachment,
    AuditEvent,
    Decision,
    ImageHash,
    Post,
    School,
    Score,
    utcnow,
)

log = logging.getLogger(__name__)

RELEASED = "released"
REMOVED = "removed"
BLOCKED = "blocked"
LISTS = (RELEASED, REMOVED, BLOCKED)
LOOKUP_LISTS = (REMOVED, BLOCKED)  # what a new photo is checked against
MAX_VARIANTS = 9  # the whole image and its 8 crop variants
MAX_NOTE_CHARS = 500
_ENTRY_PREFIX = {RELEASED: "rel_", REMOVED: "rem_", BLOCKED: "blk_"}
_HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class HashEntry:
    """One image on one list: its hashes (variant = index) and where it came from."""

    entry: str
    list_name: str
    hashes: tuple[str, ...]
    note: str | None
    added_by: str
    added_at: datetime
    post_id: str | None = None
    attachment_id: str | None = None

    @property
    def phash(self) -> str:
        """The whole image's pHash (variant 0)."""
        return self.hashes[0]


@dataclass(frozen=True, slots=True)
class HashRow:
    """A stored hash as the workers' index needs it."""

    pk: int
    list_name: str
    entry: str
    hash: str
    added_at: datetime  # UTC


def check_hashes(hashes: Sequence[str]) -> list[str]:
    """The hashes as lowercase 16-hex strings, 1 to 9 of them; InvalidInput ``invalid_hash``."""
    if not 1 <= len(hashes) <= MAX_VARIANTS:
        raise InvalidInput(
            f"an image has 1 to {MAX_VARIANTS} hashes, not {len(hashes)}", code="invalid_hash"
        )
    out = []
    for value in hashes:
        text = value.strip().lower() if isinstance(value, str) else ""
        if not _HEX16.fullmatch(text):
            raise InvalidInput(
                f"a pHash is 16 hexadecimal characters, not {value!r}", code="invalid_hash"
            )
        out.append(text)
    return out


def _check_list(list_name: str) -> None:
    if list_name not in LISTS:
        raise ValueError(f"list is one of {LISTS}, not {list_name!r}")


def _new_entry(list_name: str) -> str:
    return _ENTRY_PREFIX[list_name] + secrets.token_hex(8)


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert hash rows, skipping those whose (list, attachment, variant) is stored."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, ImageHash.__table__)
    statement = (
        insert(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["list", "attachment_pk", "variant"])
        .returning(table.c.pk)
    )
    return len(session.execute(statement).all())


def add_image(
    *,
    session: Session,
    school_id: str,
    list_name: str,
    hashes: Sequence[str],
    added_by: str,
    note: str | None = None,
    post_pk: int | None = None,
    attachment_pk: int | None = None,
) -> str:
    """Put one image's hashes (variant = index) on a list; returns its entry id.

    For an attachment already on the list, nothing is added and its entry is returned.
    """
    entry, _ = _add(session, school_id, list_name, hashes, added_by, note, post_pk, attachment_pk)
    return entry


def _add(
    session: Session,
    school_id: str,
    list_name: str,
    hashes: Sequence[str],
    added_by: str,
    note: str | None,
    post_pk: int | None,
    attachment_pk: int | None,
) -> tuple[str, int]:
    """(entry id, rows inserted)."""
    _check_list(list_name)
    checked = check_hashes(hashes)
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"the note is over {MAX_NOTE_CHARS} characters", code="invalid_field")
    if attachment_pk is not None:
        existing = session.scalar(
            select(ImageHash.entry).where(
                ImageHash.list_name == list_name, ImageHash.attachment_pk == attachment_pk
            )
        )
        if existing is not None:
            return existing, 0
    entry = _new_entry(list_name)
    now = utcnow()
    inserted = _insert_ignore(
        session,
        [
            {
                "school_id": school_id,
                "list": list_name,
                "entry": entry,
                "hash": value,
                "variant": variant,
                "post_pk": post_pk,
                "attachment_pk": attachment_pk,
                "note": note,
                "added_by": added_by[:128],
                "added_at": now,
            }
            for variant, value in enumerate(checked)
        ],
    )
    return entry, inserted


def block_image(
    *, session: Session, school_id: str, hashes: Sequence[str], note: str | None, added_by: str
) -> HashEntry:
    """Add an image to the school's block list, with an audit event."""
    entry = add_image(
        session=session,
        school_id=school_id,
        list_name=BLOCKED,
        hashes=hashes,
        added_by=added_by,
        note=note,
    )
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=added_by[:128],
            action="blocklist.added",
            detail={"entry": entry, "phash": check_hashes(hashes)[0], "note": note},
        )
    )
    session.flush()
    return get_entry(session=session, school_id=school_id, list_name=BLOCKED, entry=entry)


def _entries(rows: Iterable[tuple[ImageHash, str | None, str | None]]) -> list[HashEntry]:
    grouped: dict[str, list[tuple[ImageHash, str | None, str | None]]] = {}
    for row in rows:
        grouped.setdefault(row[0].entry, []).append(row)
    entries = []
    for items in grouped.values():
        items.sort(key=lambda item: item[0].variant)
        first, post_id, attachment_id = items[0]
        entries.append(
            HashEntry(
                entry=first.entry,
                list_name=first.list_name,
                hashes=tuple(item[0].hash for item in items),
                note=first.note,
                added_by=first.added_by,
                added_at=as_utc(first.added_at),
                post_id=post_id,
                attachment_id=attachment_id,
            )
        )
    return entries


def _entry_query(school_id: str, list_name: str) -> Any:
    return (
        select(ImageHash, Post.external_id, Attachment.external_id)
        .outerjoin(Post, Post.pk == ImageHash.post_pk)
        .outerjoin(Attachment, Attachment.pk == ImageHash.attachment_pk)
        .where(ImageHash.school_id == school_id, ImageHash.list_name == list_name)
    )


def get_entry(*, session: Session, school_id: str, list_name: str, entry: str) -> HashEntry:
    rows = session.execute(_entry_query(school_id, list_name).where(ImageHash.entry == entry))
    found = _entries(rows)
    if not found:
        raise NotFound(f"entry {entry!r} is not on the {list_name} list", code="unknown_entry")
    return found[0]


def list_entries(
    *, session: Session, school_id: str, list_name: str, limit: int = 500
) -> list[HashEntry]:
    """The newest ``limit`` entries of one list, newest first."""
    _check_list(list_name)
    newest = (
        select(ImageHash.entry)
        .where(ImageHash.school_id == school_id, ImageHash.list_name == list_name)
        .group_by(ImageHash.entry)
        .order_by(func.max(ImageHash.pk).desc())
        .limit(limit)
    )
    wanted = list(session.scalars(newest))
    if not wanted:
        return []
    rows = session.execute(_entry_query(school_id, list_name).where(ImageHash.entry.in_(wanted)))
    by_entry = {e.entry: e for e in _entries(rows)}
    return [by_entry[entry] for entry in wanted if entry in by_entry]


def delete_entry(
    *, session: Session, school_id: str, list_name: str, entry: str, actor: str
) -> int:
    """Delete one entry (all its variants) and bump the school's hash-list generation."""
    _check_list(list_name)
    deleted = session.execute(
        delete(ImageHash)
        .where(
            ImageHash.school_id == school_id,
            ImageHash.list_name == list_name,
            ImageHash.entry == entry,
        )
        .returning(ImageHash.pk)
    ).all()
    if not deleted:
        raise NotFound(f"entry {entry!r} is not on the {list_name} list", code="unknown_entry")
    session.execute(
        update(School)
        .where(School.id == school_id)
        .values(hash_lists_generation=School.hash_lists_generation + 1)
    )
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=actor[:128],
            action=f"{'blocklist' if list_name == BLOCKED else list_name}.deleted",
            detail={"entry": entry, "list": list_name},
        )
    )
    session.flush()
    return len(deleted)


# --- released and removed posts ---------------------------------------------------------


def _media_hashes(session: Session, post: Post) -> dict[str, list[str]]:
    """Per attachment id, the hashes the media check stored (skipping malformed ones)."""
    media = session.scalar(
        select(Score).where(Score.post_pk == post.pk, Score.check_name == MEDIA_CHECK)
    )
    if media is None or not media.ok or not isinstance(media.result, dict):
        return {}
    per_attachment = media.result.get("attachments")
    if not isinstance(per_attachment, dict):
        return {}
    found: dict[str, list[str]] = {}
    for attachment_id, item in per_attachment.items():
        hashes = item.get("hashes") if isinstance(item, dict) else None
        if not hashes:
            continue
        try:
            found[str(attachment_id)] = check_hashes(list(hashes))
        except InvalidInput:
            log.warning("post %d attachment %s: malformed stored hashes", post.pk, attachment_id)
    return found


def _released_ids(decision: Decision | None) -> set[str]:
    if decision is None or decision.action != "release":
        return set()
    return {str(a.get("id")) for a in decision.attachments or [] if a.get("action") == "release"}


def _remember(session: Session, post: Post, attachment_ids: set[str], added_by: str) -> int:
    if not attachment_ids:
        return 0
    hashes = _media_hashes(session, post)
    added = 0
    for attachment in post.attachments:
        stored = hashes.get(attachment.external_id)
        if attachment.external_id not in attachment_ids or not stored:
            continue
        _, inserted = _add(
            session,
            post.school_id,
            RELEASED,
            stored,
            added_by,
            None,
            post.pk,
            attachment.pk,
        )
        added += inserted
    session.flush()
    return added


def remember_released(*, session: Session, post: Post, added_by: str = "auto") -> int:
    """Put the hashes of the attachments the latest decision releases on ``released``.

    Called in the transaction of a releasing decision (automatic or human). The hashes
    come from the media check's stored result (``result["attachments"][id]["hashes"]``);
    attachments without hashes (unreadable, or too flat to hash) are skipped. Returns the
    rows added (0 when they were there already).
    """
    decision = latest_decision(session=session, post_pk=post.pk)
    return _remember(session, post, _released_ids(decision), added_by)


def was_released(*, session: Session, post_pk: int) -> bool:
    """Whether any decision on the post ever released it."""
    count = session.scalar(
        select(func.count())
        .select_from(Decision)
        .where(Decision.post_pk == post_pk, Decision.action == "release")
    )
    return bool(count)


def mark_removed(*, session: Session, post: Post, reason: str, by: str) -> int:
    """The platform took a released post down: copy its released hashes to ``removed``.

    Conflict ``post_not_released`` if no decision ever released it. Idempotent; returns
    the hashes now on the removed list for this post. Audited as ``post.removed``.
    """
    decisions = session.scalars(select(Decision).where(Decision.post_pk == post.pk)).all()
    if not any(d.action == "release" for d in decisions):
        raise Conflict(f"post {post.external_id!r} was never released", code="post_not_released")
    ever = set().union(*(_released_ids(d) for d in decisions))
    _remember(session, post, ever, "auto")
    released = session.scalars(
        select(ImageHash)
        .where(
            ImageHash.school_id == post.school_id,
            ImageHash.list_name == RELEASED,
            ImageHash.post_pk == post.pk,
        )
        .order_by(ImageHash.attachment_pk, ImageHash.variant)
    ).all()
    by_attachment: dict[int | None, list[str]] = {}
    for row in released:
        by_attachment.setdefault(row.attachment_pk, []).append(row.hash)
    total = 0
    for attachment_pk, hashes in by_attachment.items():
        add_image(
            session=session,
            school_id=post.school_id,
            list_name=REMOVED,
            hashes=hashes,
            added_by=by,
            note=reason[:MAX_NOTE_CHARS] or None,
            post_pk=post.pk,
            attachment_pk=attachment_pk,
        )
        total += len(hashes)
    session.add(
        AuditEvent(
            school_id=post.school_id,
            actor=by[:128],
            action="post.removed",
            post_pk=post.pk,
            detail={"reason": reason, "hashes": total},
        )
    )
    session.flush()
    return total


# --- what the workers' index reads ------------------------------------------------------


def generation(*, session: Session, school_id: str) -> int:
    """The school's hash-list generation: it changes whenever hashes were deleted."""
    return int(
        session.scalar(select(School.hash_lists_generation).where(School.id == school_id)) or 0
    )


def hash_rows(
    *,
    session: Session,
    school_id: str,
    lists: Sequence[str] = LOOKUP_LISTS,
    after_pk: int = 0,
    added_since: datetime | None = None,
) -> list[HashRow]:
    """The school's rows on ``lists`` with a pk above ``after_pk`` (or, when
    ``added_since`` is given, also those added since then), in pk order."""
    condition = ImageHash.pk > after_pk
    if added_since is not None:
        condition = condition | (ImageHash.added_at >= added_since)
    rows = session.execute(
        select(
            ImageHash.pk, ImageHash.list_name, ImageHash.entry, ImageHash.hash, ImageHash.added_at
        )
        .where(ImageHash.school_id == school_id, ImageHash.list_name.in_(lists), condition)
        .order_by(ImageHash.pk)
    )
    return [
        HashRow(pk, list_name, entry, value, as_utc(added_at))
        for pk, list_name, entry, value, added_at in rows
    ]
