"""FastAPI dependencies as ``Annotated`` aliases, so routes read like prose."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session

from moderation.config import Settings, get_settings
from moderation.errors import NotAuthenticated, RateLimited
from moderation.queue import Enqueuer, enqueuer_for
from moderation.storage.db import get_sessionmaker
from moderation.storage.schools import school_for_key
from moderation.storage.tables import School

SettingsDep = Annotated[Settings, Depends(get_settings)]

MAX_ROW_ID = 2**31 - 1  # the largest INTEGER key PostgreSQL stores (int4); also SQLite's
# Our integer ids in a path: a larger number is refused as 422 before it reaches the
# database, where it overflowed the driver (a 500), instead of being an unknown id.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    session = get_sessionmaker(settings.database_url)()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]


@lru_cache(maxsize=4)
def _limiter(storage_uri: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(storage_uri))


_bearer = HTTPBearer(auto_error=False, description="The school's API key")


def current_school(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> School:
    """The school whose API key signs the request; rate limited per key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated(
            "send the school's API key as 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    school = school_for_key(
        session=session, api_key=credentials.credentials, pepper=settings.api_key_pepper
    )
    # End the read and give its connection back: the route may wait next for a worker
    # thread, and a burst of requests each holding a connection while they wait ran the
    # pool dry (timeouts, measured under `moderation bench e2e`). The school stays loaded.
    session.commit()
    limit = parse(settings.rate_limit)
    if not _limiter(settings.rate_limit_storage).hit(limit, "key", school.api_key_hash):
        raise RateLimited(
            f"more than {settings.rate_limit} requests for this API key; slow down",
            code="rate_limited",
        )
    request.state.school_id = school.id
    return school


SchoolDep = Annotated[School, Depends(current_school)]


def get_enqueuer(settings: SettingsDep) -> Enqueuer:
    return enqueuer_for(settings)


EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
