"""Posts: intake, check results, the automatic decision and what follows from it.

Intake validates everything before writing and writes the post, its attachments and its
tags in one transaction, so a rejected request leaves no record. A repeated request
with the same id and body returns the stored post; a different body under the same id
is a conflict.

A decision is stored once: ``decisions`` has a unique (post, sequence) key and the
automatic decision is sequence 1, inserted with "on conflict do nothing". Only the
transaction that inserted it sets the status, opens the flag, writes the audit event and
queues the callback, so two workers finishing the last two checks at once still give
exactly one decision.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from moderation.domain import ACTION_TO_STATUS, Action, AuthorRole, ChannelType, PostStatus
from moderation.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from moderation.media import ImageLimits
from moderation.policy import Decision as PolicyDecision
from moderation.policy import PostContext
from moderation.schemas import (
    AttachmentDecisionPublic,
    DecisionPublic,
    NoticePublic,
    PostCreate,
    PostPublic,
    ReasonPublic,
)
from moderation.storage.callbacks import queue_callback
from moderation.storage.roster import find_students, get_group, get_student
from moderation.storage.tables import (
    Attachment,
    AuditEvent,
    Decision,
    Flag,
    Post,
    Score,
    utcnow,
)
from moderation.video import VideoLimits, inspect_attachment, is_video_type

TEXT_CHECK = "text"
MEDIA_CHECK = "media"


@dataclass(frozen=True)
class IntakeLimits:
    max_text_chars: int
    max_attachments: int
    max_attachment_bytes: int  # per photo
    max_video_bytes: int = VideoLimits.MAX_BYTES  # per video

    def max_bytes(self, content_type: str) -> int:
        return self.max_video_bytes if is_video_type(content_type) else self.max_attachment_bytes


@dataclass(frozen=True)
class Intake:
    post: Post
    created: bool  # False: an identical earlier request, nothing new was written


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def has_visible_text(text: str) -> bool:
    """Whether the text shows anything. Whitespace and invisible format characters alone
    (zero-width spaces and joiners, direction marks and overrides, U+FEFF) are an empty
    post: thousands of them would otherwise pass as text and be published blank."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def body_hash(post_in: PostCreate) -> str:
    canonical = json.dumps(post_in.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _decode_attachments(post_in: PostCreate, limits: IntakeLimits) -> list[tuple[str, str, bytes]]:
    if len(post_in.attachments) > limits.max_attachments:
        raise InvalidInput(
            f"at most {limits.max_attachments} attachments per post",
            code="too_many_attachments",
            limit=limits.max_attachments,
        )
    ids = [a.id for a in post_in.attachments]
    if len(set(ids)) != len(ids):
        raise InvalidInput("attachment ids must be unique", code="duplicate_attachment_id")
    image_limits = ImageLimits(max_bytes=limits.max_attachment_bytes)
    decoded = []
    for index, att in enumerate(post_in.attachments):
        max_bytes = limits.max_bytes(att.content_type)
        if len(att.data) > 4 * (max_bytes // 3 + 1):  # base64: checked before decoding
            raise PayloadTooLarge(
                f"attachment {att.id!r} is over {max_bytes} bytes",
                code="attachment_too_large",
                attachment=att.id,
                limit=max_bytes,
            )
        try:
            data = base64.b64decode(att.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                f"attachment {att.id!r}: data is not valid base64",
                code="invalid_base64",
                attachment=att.id,
                index=index,
            ) from exc
        if len(data) > max_bytes:
            raise PayloadTooLarge(
                f"attachment {att.id!r} is over {max_bytes} bytes",
                code="attachment_too_large",
                attachment=att.id,
                limit=max_bytes,
            )
        info = inspect_attachment(data, att.content_type, image_limits)  # images and videos
        decoded.append((att.id, info.content_type, data))
    return decoded


def _channel_group_pk(session: Session, school_id: str, post_in: PostCreate) -> int | None:
    channel = post_in.channel
    try:
        if channel.type is ChannelType.GROUP:
            return get_group(session=session, school_id=school_id, group_id=channel.id).pk
        if channel.type is ChannelType.KINDGESPREK:
            student = get_student(session=session, school_id=school_id, student_id=channel.id)
            return student.group_pk
    except NotFound as exc:
        raise InvalidInput(
            f"channel {channel.type.value}:{channel.id} is not known: {exc.message}",
            code="unknown_channel",
            channel_type=channel.type.value,
            channel_id=channel.id,
        ) from exc
    return None  # school-wide channel


def find_post(*, session: Session, school_id: str, post_id: str) -> Post | None:
    return session.scalars(
        select(Post).where(Post.school_id == school_id, Post.external_id == post_id)
    ).first()


def get_post(*, session: Session, school_id: str, post_id: str) -> Post:
    post = find_post(session=session, school_id=school_id, post_id=post_id)
    if post is None:
        raise NotFound(f"post {post_id!r} is not known", code="unknown_post")
    return post


def _replay(existing: Post, digest: str) -> Intake:
    if existing.body_hash != digest:
        raise Conflict(
            f"post {existing.external_id!r} was submitted before with a different body",
            code="post_id_conflict",
        )
    return Intake(existing, created=False)


def create_post(
    *, session: Session, school_id: str, post_in: PostCreate, limits: IntakeLimits
) -> Intake:
    """Validate and store a post; commit is the caller's (the API's) job."""
    digest = body_hash(post_in)
    existing = find_post(session=session, school_id=school_id, post_id=post_in.id)
    if existing is not None:
        return _replay(existing, digest)
    if len(post_in.text) > limits.max_text_chars:
        raise InvalidInput(
            f"text is {len(post_in.text)} characters; at most {limits.max_text_chars}",
            code="text_too_long",
            limit=limits.max_text_chars,
        )
    if not has_visible_text(post_in.text) and not post_in.attachments:
        raise InvalidInput("a post needs text or an attachment", code="empty_post")
    group_pk = _channel_group_pk(session, school_id, post_in)
    tagged = find_students(
        session=session, school_id=school_id, student_ids=post_in.tagged_students
    )
    attachments = _decode_attachments(post_in, limits)

    post = Post(
        school_id=school_id,
        external_id=post_in.id,
        body_hash=digest,
        channel_type=post_in.channel.type.value,
        channel_id=post_in.channel.id,
        group_pk=group_pk,
        author_id=post_in.author.id,
        author_role=post_in.author.role.value,
        text=post_in.text,
        callback_url=post_in.callback_url,
        status=PostStatus.PENDING.value,
        enqueue_count=1,  # the API enqueues it right after the commit
    )
    post.tagged = tagged
    post.attachments = [
        Attachment(
            external_id=att_id,
            position=i,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
        for i, (att_id, content_type, data) in enumerate(attachments)
    ]
    try:
        with session.begin_nested():
            session.add(post)
            session.flush()
    except IntegrityError:
        existing = find_post(session=session, school_id=school_id, post_id=post_in.id)
        if existing is None:
            raise
        return _replay(existing, digest)
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=f"{post_in.author.role.value}:{post_in.author.id}",
            action="post.received",
            post_pk=post.pk,
            detail={
                "channel": f"{post.channel_type}:{post.channel_id}",
                "attachments": len(attachments),
            },
        )
    )
    return Intake(post, created=True)


# --- checks and decisions --------------------------------------------------------------


def needed_checks(post: Post) -> set[str]:
    checks = set()
    if post.text.strip():
        checks.add(TEXT_CHECK)
    if post.attachments:
        checks.add(MEDIA_CHECK)
    return checks


def post_context(post: Post) -> PostContext:
    return PostContext(
        channel=ChannelType(post.channel_type),
        author_role=AuthorRole(post.author_role),
        has_text=bool(post.text.strip()),
        posted_at=as_utc(post.created_at),
        attachment_ids=tuple(a.external_id for a in post.attachments),
    )


def _insert_ignore(session: Session, table: Any, values: dict[str, Any], keys: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if this call inserted the row."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(table.c.pk)
    )
    return session.execute(stmt).first() is not None


def record_check(
    *,
    session: Session,
    post_pk: int,
    check_name: str,
    scorer: str,
    ok: bool,
    result: dict[str, Any],
) -> bool:
    """Store one check's result once; a redelivered task's second write is a no-op."""
    return _insert_ignore(
        session,
        Score.__table__,
        {
            "post_pk": post_pk,
            "check_name": check_name,
            "scorer": scorer,
            "ok": ok,
            "result": result,
            "created_at": utcnow(),
        },
        ["post_pk", "check_name"],
    )


def checks_of(*, session: Session, post_pk: int) -> dict[str, Score]:
    rows = session.scalars(select(Score).where(Score.post_pk == post_pk)).all()
    return {row.check_name: row for row in rows}


def _reason_json(reason: Any) -> dict[str, Any]:
    return {
        "code": reason.code,
        "category": reason.category.value if reason.category else None,
        "score": reason.score,
        "spans": [list(s) for s in reason.spans],
        "message_nl": reason.message_nl,
        "message_en": reason.message_en,
    }


def store_auto_decision(*, session: Session, post: Post, decision: PolicyDecision) -> int | None:
    """Store the automatic decision once. Returns the callback's pk to enqueue, if any."""
    now = utcnow()
    row = {
        "post_pk": post.pk,
        "sequence": 1,
        "action": decision.action.value,
        "reasons": [_reason_json(r) for r in decision.reasons],
        "attachments": [
            {
                "id": a.attachment_id,
                "action": a.action.value,
                "reasons": [_reason_json(r) for r in a.reasons],
            }
            for a in decision.attachments
        ],
        "notices": [
            {"code": n.code, "message_nl": n.message_nl, "message_en": n.message_en}
            for n in decision.notices
        ],
        "decided_by": "auto",
        "policy_version": decision.policy_version,
        "created_at": now,
    }
    if not _insert_ignore(session, Decision.__table__, row, ["post_pk", "sequence"]):
        return None
    status = ACTION_TO_STATUS[decision.action]
    session.execute(
        update(Post).where(Post.pk == post.pk).values(status=status.value, updated_at=now)
    )
    # the loaded post learns its new status without a reload (and without a second UPDATE)
    set_committed_value(post, "status", status.value)
    if decision.action is Action.HOLD:
        top = decision.reasons[0].code if decision.reasons else "held"
        session.add(Flag(school_id=post.school_id, post_pk=post.pk, reason=top))
    session.add(
        AuditEvent(
            school_id=post.school_id,
            actor="auto",
            action=f"decision.{decision.action.value}",
            post_pk=post.pk,
            detail={
                "reasons": [r.code for r in decision.reasons],
                "policy_version": decision.policy_version,
            },
        )
    )
    session.flush()
    if decision.action is Action.RELEASE and decision.attachments:  # text only: no hashes
        # image_hashes reads this module's helpers: imported here, not at the top
        from moderation.storage.image_hashes import remember_released

        remember_released(session=session, post=post)
    # the callback carries what GET /v1/posts/{id} shows, built from the row just written
    public = public_view(post.external_id, status, Decision(**row)).model_dump(mode="json")
    return queue_callback(session=session, post=post, sequence=1, decision=public)


def latest_decision(*, session: Session, post_pk: int) -> Decision | None:
    return session.scalars(
        select(Decision).where(Decision.post_pk == post_pk).order_by(Decision.sequence.desc())
    ).first()


def _reason_public(raw: dict[str, Any]) -> ReasonPublic:
    return ReasonPublic(
        code=raw["code"],
        category=raw.get("category"),
        score=raw.get("score"),
        spans=[(int(s), int(e)) for s, e in raw.get("spans", [])],
        message_nl=raw["message_nl"],
        message_en=raw["message_en"],
    )


def post_public(*, session: Session, post: Post) -> PostPublic:
    decision = latest_decision(session=session, post_pk=post.pk)
    return public_view(post.external_id, PostStatus(post.status), decision)


def public_view(post_id: str, status: PostStatus, decision: Decision | None) -> PostPublic:
    """A post as the platform sees it, from its status and latest decision row."""
    if decision is None:
        return PostPublic(id=post_id, status=status)
    return PostPublic(
        id=post_id,
        status=status,
        decision=DecisionPublic(
            action=decision.action,
            reasons=[_reason_public(r) for r in decision.reasons],
            attachments=[
                AttachmentDecisionPublic(
                    id=a["id"],
                    action=a["action"],
                    reasons=[_reason_public(r) for r in a["reasons"]],
                    blur=bool(a.get("blur", False)),
                )
                for a in decision.attachments
            ],
            notices=[NoticePublic(**n) for n in decision.notices],
            decided_by=decision.decided_by,
            decided_at=as_utc(decision.created_at).isoformat(),
        ),
    )


def stale_pending_posts(
    *, session: Session, older_than: timedelta, limit: int = 500
) -> Sequence[Post]:
    """Posts still pending after ``older_than``: a worker dropped them or a queue lost them."""
    cutoff = utcnow() - older_than
    return session.scalars(
        select(Post)
        .where(Post.status == PostStatus.PENDING.value, Post.updated_at < cutoff)
        .order_by(Post.updated_at)
        .limit(limit)
    ).all()


def mark_enqueued(*, session: Session, post_pk: int) -> int:
    """Count one more enqueue and restart the pending clock; returns the new count."""
    session.execute(
        update(Post)
        .where(Post.pk == post_pk)
        .values(enqueue_count=Post.enqueue_count + 1, updated_at=utcnow())
    )
    count = session.scalar(select(Post.enqueue_count).where(Post.pk == post_pk))
    return int(count or 0)
