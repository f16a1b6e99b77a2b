"""The outbox of callbacks to the platform (decisions, takedown requests): written in the
transaction that causes them, delivered by the ``callbacks`` queue, found again by the
sweeper if a delivery task was lost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from moderation.storage.tables import Callback, Post, School, utcnow

STALE_AFTER = timedelta(minutes=15)  # default; longer than the longest retry backoff (10 min)


def queue_callback(
    *, session: Session, post: Post, sequence: int, decision: dict[str, object]
) -> int | None:
    """Write the decision callback to the outbox; the caller enqueues it after commit."""
    payload = {
        "event": "post.decision",
        "school_id": post.school_id,
        **decision,
    }
    return queue_event(
        session=session,
        post=post,
        idempotency_key=f"{post.school_id}:{post.external_id}:decision:{sequence}",
        payload=payload,
    )


def queue_event(
    *, session: Session, post: Post, idempotency_key: str, payload: dict[str, object]
) -> int | None:
    """Write any callback about a post (a decision, a takedown request) to the outbox,
    to the post's callback URL or else the school's webhook; None if there is neither."""
    school = session.get(School, post.school_id)
    url = post.callback_url or (school.webhook_url if school else None)
    if not url:
        return None
    callback = Callback(
        school_id=post.school_id,
        post_pk=post.pk,
        idempotency_key=idempotency_key,
        url=url,
        payload=payload,
    )
    session.add(callback)
    session.flush()
    return callback.pk


def stale_callbacks(
    *,
    session: Session,
    never_tried_after: timedelta,
    retried_after: timedelta = STALE_AFTER,
    limit: int = 500,
) -> Sequence[Callback]:
    """Pending callbacks whose delivery task was lost.

    A callback never tried is lost once it waited ``never_tried_after`` (the pending-post
    timeout: its task never reached the queue, or the broker lost it); one already tried
    waits for its retry, so it is lost only after ``retried_after``, longer than any
    backoff."""
    now = utcnow()
    return session.scalars(
        select(Callback)
        .where(
            Callback.status == "pending",
            or_(
                and_(Callback.attempts == 0, Callback.updated_at < now - never_tried_after),
                Callback.updated_at < now - retried_after,
            ),
        )
        .order_by(Callback.updated_at)
        .limit(limit)
    ).all()


def touch_callback(*, session: Session, callback_pk: int) -> None:
    """Restart a callback's clock, so the next sweep does not send it again at once."""
    session.execute(update(Callback).where(Callback.pk == callback_pk).values(updated_at=utcnow()))
