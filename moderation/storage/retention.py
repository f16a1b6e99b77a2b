"""The retention job: a post's text and photos are kept only as long as the school needs.

POLICY.md and issue #7: texts and images are purged ``retention_days`` (the school's
policy; 30 by default) after the post's **final** decision; the decisions, their
reasons and scores, and the audit trail stay, so the school can still show what was
decided, when, by whom and why. The sweeper (``workers.pipeline.sweep``) calls
:func:`purge_expired` on every round, with its clock passed in.

What a purge does to one post, in one transaction with its audit event:

* ``posts.text`` becomes the empty string and ``posts.purged_at`` records when;
* every attachment's bytes, the original (``data``) and the released copy
  (``released_data``), become NULL; the row stays (id, type, size, SHA-256), so
  decisions per attachment and hash-list entries still name it.

Kept as they are: ``decisions`` (reasons hold character offsets and the Dutch and
English messages, never the words), ``scores`` (per category a score and offsets;
privacy findings and notices are kinds and offsets), ``flags``, ``callbacks`` (the
decision as sent to the platform, which never carries the text) and ``audit_events``.

Which posts. Only posts whose decision is final: status ``released`` or ``rejected``
(held posts that a reviewer decided later included), with no open flag (a report on a
released post, or an appeal of a rejected one, is a decision still to come) and no
decision newer than the cutoff (a reviewer's later decision restarts the clock). A held
or pending post waits however old it is. Each school is purged with its own policy.

Batches. At most ``batch_size`` posts per school per call, so one sweep never holds
long locks; the sweeper runs every ``SWEEP_INTERVAL_S`` and works a backlog off in a
few rounds. Every batch writes one ``retention.purged`` audit event naming its posts.
The update re-checks the conditions, so a report opened between the scan and the
update keeps its post.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from moderation.domain import PostStatus
from moderation.storage.policies import current_policy
from moderation.storage.posts import as_utc
from moderation.storage.tables import Attachment, AuditEvent, Decision, Flag, Post, School

log = logging.getLogger(__name__)

FINAL_STATUSES = (PostStatus.RELEASED.value, PostStatus.REJECTED.value)
BATCH_SIZE = 500  # posts per school per call
ACTOR = "retention"
AUDIT_ACTION = "retention.purged"


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one call purged, over all schools."""

    posts: int  # posts whose text was emptied
    attachments: int  # attachments whose bytes were dropped
    schools: int  # schools with at least one purged post


def _purgeable(school_id: str, cutoff: datetime) -> list[ColumnElement[bool]]:
    """The conditions of a post that may be purged now, as SQL expressions."""
    return [
        Post.school_id == school_id,
        Post.purged_at.is_(None),
        Post.status.in_(FINAL_STATUSES),
        Post.created_at <= cutoff,  # decided after it was created: cheap, and indexed
        ~exists().where(Decision.post_pk == Post.pk, Decision.created_at > cutoff),
        ~exists().where(Flag.post_pk == Post.pk, Flag.status == "open"),
    ]


def purge_school(
    session: Session, school_id: str, now: datetime, *, batch_size: int = BATCH_SIZE
) -> tuple[int, int]:
    """Purge one batch of one school's expired posts; (posts, attachments) purged."""
    now = as_utc(now)
    days = current_policy(session=session, school_id=school_id).retention_days
    cutoff = now - timedelta(days=days)
    conditions = _purgeable(school_id, cutoff)
    candidates = session.scalars(
        select(Post.pk).where(*conditions).order_by(Post.pk).limit(batch_size)
    ).all()
    if not candidates:
        return 0, 0
    purged = session.execute(
        update(Post)
        .where(Post.pk.in_(candidates), *conditions)
        .values(text="", purged_at=now)
        .returning(Post.pk, Post.external_id)
        .execution_options(synchronize_session=False)
    ).all()
    if not purged:
        return 0, 0
    pks = [pk for pk, _ in purged]
    attachments = len(
        session.execute(
            update(Attachment)
            .where(
                Attachment.post_pk.in_(pks),
                (Attachment.data.is_not(None)) | (Attachment.released_data.is_not(None)),
            )
            .values(data=None, released_data=None)
            .returning(Attachment.pk)
            .execution_options(synchronize_session=False)
        ).all()
    )
    session.add(
        AuditEvent(
            school_id=school_id,
            at=now,
            actor=ACTOR,
            action=AUDIT_ACTION,
            post_pk=None,
            detail={
                "posts": len(purged),
                "attachments": attachments,
                "retention_days": days,
                "decided_before": cutoff.isoformat(),
                "post_ids": sorted(external_id for _, external_id in purged),
            },
        )
    )
    session.flush()
    return len(purged), attachments


def purge_expired(
    session: Session, now: datetime, *, school_ids: Collection[str] | None = None
) -> PurgeReport:
    """Purge every school's posts whose retention period since the final decision is over.

    The caller commits (the sweeper's ``session_scope``). ``now`` is the clock, passed
    in so that tests and a back-fill can choose it; a naive value counts as UTC.
    ``school_ids`` limits the purge to those schools (tests share one database).
    """
    query = select(School.id).order_by(School.id)
    if school_ids is not None:
        query = query.where(School.id.in_(school_ids))
    posts = attachments = schools = 0
    for school_id in session.scalars(query).all():
        purged_posts, purged_attachments = purge_school(session, school_id, now)
        if purged_posts:
            posts += purged_posts
            attachments += purged_attachments
            schools += 1
            log.info(
                "retention: purged the text of %d posts and the bytes of %d attachments "
                "of school %s",
                purged_posts,
                purged_attachments,
                school_id,
            )
    return PurgeReport(posts=posts, attachments=attachments, schools=schools)
