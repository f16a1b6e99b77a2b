"""The outbox of decision callbacks: written in the decision's transaction, delivered
by the ``callbacks`` queue, found again by the sweeper if a delivery task was lost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from moderation.storage.tables import Callback, Post, School, utcnow

STALE_AFTER = timedelta(minutes=15)  # longer than the longest retry backoff (10 min)


def queue_callback(
    *, session: Session, post: Post, sequence: int, decision: dict[str, object]
) -> int | None:
    """Write the decision callback to the outbox; the caller enqueues it after commit."""
    school = session.get(School, post.school_id)
    url = post.callback_url or (school.webhook_url if school else None)
    if not url:
        return None
    payload = {
        "event": "post.decision",
        "school_id": post.school_id,
        **decision,
    }
    callback = Callback(
        school_id=post.school_id,
        post_pk=post.pk,
        idempotency_key=f"{post.school_id}:{post.external_id}:decision:{sequence}",
        url=url,
        payload=payload,
    )
    session.add(callback)
    session.flush()
    return callback.pk


def stale_callbacks(*, session: Session, limit: int = 500) -> Sequence[Callback]:
    """Pending callbacks nobody has tried for longer than any retry would wait."""
    cutoff = utcnow() - STALE_AFTER
    return session.scalars(
        select(Callback)
        .where(Callback.status == "pending", Callback.updated_at < cutoff)
        .order_by(Callback.updated_at)
        .limit(limit)
    ).all()


def touch_callback(*, session: Session, callback_pk: int) -> None:
    """Restart a callback's clock, so the next sweep does not send it again at once."""
    session.execute(update(Callback).where(Callback.pk == callback_pk).values(updated_at=utcnow()))
