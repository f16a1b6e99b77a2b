"""The platform's sign-in token for the review page: a short-lived HS256 JWT.

The platform is the identity provider. When a teacher opens the review page from the
app, the platform signs a token under the school's *review secret* and sends the
browser to ``/review/login?token=...``. Claims:

    sub     the staff member's external id (as in the roster)
    school  the school's id
    role    teacher | staff | admin
    groups  the group ids the platform lets this person review
    name    display name
    exp     expiry (Unix time); at most ``review_token_max_ttl_s`` ahead
    jti     optional; when present the token can be used only once

Only HS256 is accepted (never ``none``, never a key-confusion algorithm). The token is
read once without checking the signature only to learn which school's secret to check
it with; nothing from that unchecked read is trusted.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from moderation.errors import NotAuthenticated

ALGORITHM = "HS256"
ROLES = ("teacher", "staff", "admin")
REQUIRED = ["exp", "sub", "school", "role"]


@dataclass(frozen=True, slots=True)
class ReviewClaims:
    sub: str
    school: str
    role: str
    groups: tuple[str, ...]
    name: str
    exp: datetime
    jti: str | None


def sign_review_token(
    *,
    secret: str,
    school_id: str,
    staff_id: str,
    role: str,
    groups: Sequence[str],
    name: str,
    ttl_s: int,
    now: datetime | None = None,
    jti: str | None = None,
) -> str:
    """What the platform does; ``moderation admin review-link`` and the tests use it."""
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "sub": staff_id,
        "school": school_id,
        "role": role,
        "groups": list(groups),
        "name": name,
        "iat": int(issued.timestamp()),
        "exp": int(issued.timestamp()) + ttl_s,
        "jti": jti or secrets.token_urlsafe(16),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def _invalid(why: str) -> NotAuthenticated:
    return NotAuthenticated(f"the sign-in token is not valid: {why}", code="invalid_review_token")


def token_school(token: str) -> str:
    """The school a token claims to be for, *unverified*: only to pick the secret."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _invalid("not a JWT") from exc
    if header.get("alg") != ALGORITHM:
        raise _invalid("only HS256 is accepted")
    school = claims.get("school")
    if not isinstance(school, str) or not school:
        raise _invalid("no school claim")
    return school


def verify_review_token(
    token: str, *, secret: str, max_ttl_s: int, leeway_s: int, now: datetime | None = None
) -> ReviewClaims:
    """Check signature, expiry and claims; raises NotAuthenticated on anything wrong."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": REQUIRED},
            leeway=leeway_s,
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated(
            "the sign-in token has expired", code="expired_review_token"
        ) from exc
    except jwt.PyJWTError as exc:
        raise _invalid(str(exc)) from exc
    moment = now or datetime.now(UTC)
    exp = datetime.fromtimestamp(int(claims["exp"]), UTC)
    if (exp - moment).total_seconds() > max_ttl_s + leeway_s:
        raise _invalid(f"a sign-in token may be valid for {max_ttl_s} s at most")
    sub, school, role = claims["sub"], claims["school"], claims["role"]
    groups = claims.get("groups", [])
    if not (isinstance(sub, str) and sub and isinstance(school, str) and school):
        raise _invalid("sub and school must be strings")
    if role not in ROLES:
        raise _invalid(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise _invalid("groups must be a list of group ids")
    name = claims.get("name")
    jti = claims.get("jti")
    return ReviewClaims(
        sub=sub,
        school=school,
        role=role,
        groups=tuple(groups),
        name=name if isinstance(name, str) and name.strip() else sub,
        exp=exp,
        jti=jti if isinstance(jti, str) and jti else None,
    )
