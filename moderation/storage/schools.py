"""Schools (tenants) and their API keys.

An API key is 256 random bits, shown once at creation; only its HMAC-SHA256 under the
server's pepper is stored. Lookup goes through the unique hash index and the final
comparison uses ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.errors import Conflict, NotAuthenticated, NotFound
from moderation.storage.tables import School

KEY_PREFIX = "msk_"


def hash_api_key(key: str, *, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class NewSchool:
    school: School
    api_key: str  # shown once, never stored


def create_school(
    *, session: Session, school_id: str, name: str, pepper: str, webhook_url: str | None = None
) -> NewSchool:
    if session.get(School, school_id) is not None:
        raise Conflict(f"school {school_id!r} exists already", code="school_exists")
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    school = School(
        id=school_id,
        name=name,
        api_key_hash=hash_api_key(api_key, pepper=pepper),
        webhook_url=webhook_url,
        webhook_secret=secrets.token_urlsafe(32),
    )
    session.add(school)
    session.flush()
    return NewSchool(school, api_key)


def rotate_api_key(*, session: Session, school_id: str, pepper: str) -> str:
    school = get_school(session=session, school_id=school_id)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    school.api_key_hash = hash_api_key(api_key, pepper=pepper)
    return api_key


def get_school(*, session: Session, school_id: str) -> School:
    school = session.get(School, school_id)
    if school is None:
        raise NotFound(f"no school {school_id!r}", code="unknown_school")
    return school


def school_for_key(*, session: Session, api_key: str, pepper: str) -> School:
    digest = hash_api_key(api_key, pepper=pepper)
    school = session.scalars(select(School).where(School.api_key_hash == digest)).first()
    if school is None or not hmac.compare_digest(school.api_key_hash, digest):
        raise NotAuthenticated("the API key is not valid", code="invalid_api_key")
    return school
