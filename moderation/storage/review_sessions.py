"""Sign-in to the review page: the platform's token in, a server-side session out.

The session lives in ``review_sessions``; the browser's cookie holds 256 random bits and
the table only their SHA-256, so a leaked database does not sign anyone in. A session
carries its own CSRF token (checked on every POST) and the reviewer's language. Signing
out ends the session at once (server side), which a signed cookie alone could not do.

Who the reviewer is, decided at sign-in and again on every request:

- the token must be signed with the school's review secret, unexpired, and valid for at
  most ``review_token_max_ttl_s`` more seconds; a token with a ``jti`` works once;
- ``sub`` must be a staff member of that school in the roster;
- the groups are the token's groups **intersected** with the roster's staff groups: the
  platform can narrow what a reviewer sees, never widen it;
- the role is the token's role, except that only a staff member whom the roster also
  lists as admin is an admin (see :func:`moderation.storage.review.effective_role`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from moderation.errors import NotAuthenticated
from moderation.review.texts import Lang, as_lang
from moderation.review.tokens import token_school, verify_review_token
from moderation.storage.posts import as_utc
from moderation.storage.review import Reviewer, reviewer_with_groups
from moderation.storage.tables import AuditEvent, ReviewSession, School, Staff, utcnow

COOKIE_NAME = "review_session"
PURGE_AFTER = timedelta(days=1)  # ended sessions are kept this long (a jti stays used)


def _digest(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    cookie_value: str  # goes into the cookie; never stored
    review_session: ReviewSession
    reviewer: Reviewer


def sign_in(
    *,
    session: Session,
    token: str,
    max_ttl_s: int,
    leeway_s: int,
    session_ttl_s: int,
    lang: Lang = "nl",
    now: datetime | None = None,
) -> SignedIn:
    """Verify the platform's token and open a session; NotAuthenticated on any doubt."""
    now = now or utcnow()
    school = session.get(School, token_school(token))
    if school is None:
        raise NotAuthenticated("the sign-in token is not valid", code="invalid_review_token")
    claims = verify_review_token(
        token, secret=school.review_secret, max_ttl_s=max_ttl_s, leeway_s=leeway_s, now=now
    )
    staff = session.scalars(
        select(Staff)
        .where(Staff.school_id == school.id, Staff.external_id == claims.sub)
        .options(selectinload(Staff.groups))
    ).first()
    if staff is None:
        raise NotAuthenticated(
            "this staff member is not in the school's roster", code="unknown_reviewer"
        )
    reviewer = reviewer_with_groups(
        staff=staff, claimed_role=claims.role, group_ids=claims.groups, name=claims.name
    )
    roster_groups = {g.external_id for g in staff.groups}
    cookie_value = secrets.token_urlsafe(32)
    row = ReviewSession(
        token_hash=_digest(cookie_value),
        school_id=school.id,
        staff_pk=staff.pk,
        role=reviewer.role,
        group_ids=sorted(set(claims.groups) & roster_groups),
        name=claims.name[:200],
        csrf_token=secrets.token_urlsafe(32),
        lang=lang,
        jti=claims.jti,
        created_at=now,
        expires_at=now + timedelta(seconds=session_ttl_s),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise NotAuthenticated(
            "this sign-in link has been used already", code="review_token_used"
        ) from exc
    session.add(
        AuditEvent(
            school_id=school.id,
            at=now,
            actor=reviewer.actor,
            action="review.sign_in",
            post_pk=None,
            detail={"groups": row.group_ids, "role": reviewer.role},
        )
    )
    session.flush()
    return SignedIn(cookie_value, row, reviewer)


def session_for_cookie(
    *, session: Session, cookie_value: str | None, now: datetime | None = None
) -> tuple[ReviewSession, Reviewer] | None:
    """The live session behind a cookie and its reviewer, re-scoped against the roster."""
    if not cookie_value:
        return None
    now = now or utcnow()
    row = session.scalars(
        select(ReviewSession).where(ReviewSession.token_hash == _digest(cookie_value))
    ).first()
    if row is None or as_utc(row.expires_at) <= now:
        return None
    staff = session.scalars(
        select(Staff).where(Staff.pk == row.staff_pk).options(selectinload(Staff.groups))
    ).first()
    if staff is None or staff.school_id != row.school_id:
        return None
    reviewer = reviewer_with_groups(
        staff=staff, claimed_role=row.role, group_ids=row.group_ids, name=row.name
    )
    return row, reviewer


def set_lang(*, review_session: ReviewSession, lang: str | None) -> Lang:
    chosen = as_lang(lang)
    if chosen is not None and chosen != review_session.lang:
        review_session.lang = chosen
    return as_lang(review_session.lang) or "nl"


def sign_out(*, session: Session, review_session: ReviewSession, actor: str) -> None:
    """End the session now; the row is kept a day so its token's jti stays used."""
    now = utcnow()
    review_session.expires_at = now
    session.add(
        AuditEvent(
            school_id=review_session.school_id,
            at=now,
            actor=actor,
            action="review.sign_out",
            post_pk=None,
            detail={},
        )
    )


def purge_sessions(*, session: Session, now: datetime | None = None) -> int:
    """Delete sessions that ended more than a day ago (the sweeper may call this)."""
    cutoff = (now or utcnow()) - PURGE_AFTER
    result = session.execute(
        delete(ReviewSession)
        .where(ReviewSession.expires_at < cutoff)
        .returning(ReviewSession.pk)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())
