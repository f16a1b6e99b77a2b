"""Two schools on a real database, the real app in process, and what they must never leak.

``Tenant`` keeps a school's API key and every secret stored for it (the key's hash, the
webhook secret, the review secret), so a test can scan any answer for all of them.
``ROSTER`` is the review tests' roster (the same in both schools, so a reviewer or
parent id means someone in either) plus people and a group that only school A has.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from moderation.api.main import create_app
from moderation.schemas import RosterIn
from moderation.storage.db import session_scope
from moderation.storage.roster import apply_roster
from moderation.storage.tables import Attachment, AuditEvent, Post, School
from tests.conftest import Configure, new_school
from tests.review.conftest import ROSTER as REVIEW_ROSTER

A_ONLY_GROUP = "groep-alleen-a"
A_ONLY_STUDENT = "ll-alleen-a"
A_ONLY_NAME = "Anna Alleenin-A"  # in no answer to school B, ever

ROSTER: dict[str, list[dict[str, Any]]] = {
    **REVIEW_ROSTER,
    "students": [
        *REVIEW_ROSTER["students"],
        {"id": "ll-2", "name": "Mohammed El Amrani", "group_id": "groep-5a"},
    ],
}
A_EXTRA: dict[str, list[dict[str, Any]]] = {
    "groups": [{"id": A_ONLY_GROUP, "name": "Groep alleen A"}],
    "students": [{"id": A_ONLY_STUDENT, "name": A_ONLY_NAME, "group_id": "groep-5a"}],
    "parents": [
        {"id": "parent-1", "name": "Eva de Vries", "student_ids": ["ll-1", A_ONLY_STUDENT]}
    ],
    "consent": [
        {"student_id": A_ONLY_STUDENT, "parent_id": "parent-1", "scope": "app", "granted": True}
    ],
}


@dataclass
class Tenant:
    """One school: its API key (shown once) and the secrets stored for it."""

    school_id: str
    api_key: str
    secrets: dict[str, str] = field(default_factory=dict)  # name: value

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_tenant(url: str, school_id: str, *, extra: dict[str, Any] | None = None) -> Tenant:
    key = new_school(url, school_id, webhook_url="http://127.0.0.1:9/moderation-callback")
    with session_scope(url) as session:
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**ROSTER), source="t")
        if extra:
            apply_roster(session=session, school_id=school_id, roster=RosterIn(**extra), source="t")
        school = session.get(School, school_id)
        assert school is not None
        stored = {
            "api_key": key,
            "api_key_hash": school.api_key_hash,
            "webhook_secret": school.webhook_secret,
            "review_secret": school.review_secret,
        }
    return Tenant(school_id, key, stored)


def leaked_secrets(text: str, tenants: Iterable[Tenant]) -> list[str]:
    """Which of the tenants' secrets appear in ``text`` (an answer's body or headers)."""
    return [
        f"{t.school_id}.{name}"
        for t in tenants
        for name, value in t.secrets.items()
        if value in text
    ]


def answer_text(response: Any) -> str:
    """Body and header values of an HTTP answer, as one string to scan."""
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{headers}\n{response.content.decode('utf-8', 'replace')}"


def count_rows(url: str, school_id: str) -> dict[str, int]:
    """The school's posts, attachments and audit events: a refused request adds none."""
    with session_scope(url) as session:
        posts = session.scalar(
            select(func.count()).select_from(Post).where(Post.school_id == school_id)
        )
        attachments = session.scalar(
            select(func.count())
            .select_from(Attachment)
            .join(Post, Post.pk == Attachment.post_pk)
            .where(Post.school_id == school_id)
        )
        events = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.school_id == school_id, AuditEvent.post_pk.is_not(None))
        )
    return {
        "posts": int(posts or 0),
        "attachments": int(attachments or 0),
        "events": int(events or 0),
    }


@dataclass
class Api:
    """The app on one database, one school with the roster, and its client."""

    url: str
    client: TestClient
    tenant: Tenant

    def post(self, body: dict[str, Any], *, raw: bytes | None = None) -> Any:
        headers = {**self.tenant.headers, "Content-Type": "application/json"}
        content = raw if raw is not None else json.dumps(body).encode()
        return self.client.post("/v1/posts", content=content, headers=headers)

    def rows(self) -> dict[str, int]:
        return count_rows(self.url, self.tenant.school_id)


def make_api(configure: Configure, url: str, school_id: str) -> Iterator[Api]:
    configure(database_url=url, rate_limit="100000/minute", text_scorer="lexicon")
    tenant = make_tenant(url, school_id)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield Api(url, client, tenant)


@pytest.fixture
def sqlite_api(configure: Configure, sqlite_url: str) -> Iterator[Api]:
    """The app on a fresh SQLite file (the embedded set-up)."""
    yield from make_api(configure, sqlite_url, "school-a")


@pytest.fixture
def any_api(configure: Configure, db_url: str) -> Iterator[Api]:
    """The app on SQLite and on PostgreSQL (a school of its own in the shared database)."""
    yield from make_api(configure, db_url, f"s-{secrets.token_hex(4)}")
