"""Fixtures for the review queue: two schools with a roster, held posts, signed-in browsers.

Held posts are made the way the pipeline makes them (intake, a stored text check, the
automatic decision), without a worker: the decision is given, not scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from moderation.api.main import create_app
from moderation.domain import Action, Category, CategoryScore, TextScore
from moderation.policy import AttachmentDecision, Reason
from moderation.policy import Decision as PolicyDecision
from moderation.review.tokens import sign_review_token
from moderation.schemas import PostCreate, RosterIn
from moderation.storage.db import session_scope
from moderation.storage.posts import IntakeLimits, create_post, record_check, store_auto_decision
from moderation.storage.roster import apply_roster
from moderation.storage.tables import School
from tests.conftest import Configure, new_school
from tests.helpers import attachment, post_body

LIMITS = IntakeLimits(max_text_chars=10_000, max_attachments=5, max_attachment_bytes=1_000_000)
WEBHOOK = "http://127.0.0.1:9/moderation-callback"  # nothing listens: the outbox keeps it

ROSTER = {
    "groups": [{"id": "groep-5a", "name": "Groep 5a"}, {"id": "groep-6b", "name": "Groep 6b"}],
    "students": [
        {"id": "ll-1", "name": "Sanne de Vries", "group_id": "groep-5a"},
        {"id": "ll-3", "name": "Daan Jansen", "group_id": "groep-6b"},
    ],
    "staff": [
        {"id": "mw-1", "name": "Juf Anouk", "role": "teacher", "group_ids": ["groep-5a"]},
        {"id": "mw-2", "name": "Meester Bas", "role": "teacher", "group_ids": ["groep-6b"]},
        {"id": "mw-3", "name": "Juf Carla", "role": "teacher", "group_ids": ["groep-5a"]},
        {"id": "dir-1", "name": "Directeur Dirk", "role": "admin", "group_ids": []},
    ],
    "parents": [
        {"id": "parent-1", "name": "Eva de Vries", "student_ids": ["ll-1"]},
        {"id": "parent-3", "name": "Ahmed Jansen", "student_ids": ["ll-3"]},
    ],
}

MESSAGES = {
    Category.INSULT: ("Je bericht bevat scheldwoorden.", "Your message contains swearing."),
    Category.THREAT: ("Je bericht lijkt een bedreiging.", "Your message looks like a threat."),
    Category.HATE: ("Je bericht discrimineert.", "Your message discriminates."),
    Category.SEXUAL: ("Je bericht is seksueel getint.", "Your message is sexual."),
}


def add_school(url: str, school_id: str, webhook_url: str | None = WEBHOOK) -> str:
    key = new_school(url, school_id, webhook_url=webhook_url)
    with session_scope(url) as session:
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**ROSTER), source="t")
    return key


def review_secret(url: str, school_id: str) -> str:
    with session_scope(url) as session:
        school = session.get(School, school_id)
        assert school is not None
        return school.review_secret


def seed_post(
    url: str,
    school_id: str,
    post_id: str,
    text: str = "Wat een kankerjuf is dat zeg",
    *,
    word: str | None = "kankerjuf",
    action: Action = Action.HOLD,
    category: Category = Category.INSULT,
    score: float = 0.7,
    group: str = "groep-5a",
    author: tuple[str, str] = ("parent-1", "parent"),
    photos: int = 0,
    channel: dict[str, str] | None = None,
) -> int:
    """A post with its automatic decision stored, as the pipeline would; returns its pk."""
    body = post_body(
        post_id,
        text,
        channel=channel or {"type": "group", "id": group},
        author={"id": author[0], "role": author[1]},
        attachments=[attachment(f"foto-{i}") for i in range(photos)],
    )
    with session_scope(url) as session:
        post = create_post(
            session=session, school_id=school_id, post_in=PostCreate(**body), limits=LIMITS
        ).post
        spans = ((text.index(word), text.index(word) + len(word)),) if word else ()
        record_check(
            session=session,
            post_pk=post.pk,
            check_name="text",
            scorer="test",
            ok=True,
            result=TextScore("test", {category: CategoryScore(category, score, spans)}).to_json(),
        )
        nl, en = MESSAGES[category]
        reasons = (
            ()
            if action is Action.RELEASE
            else (
                Reason(
                    code=f"text_{category.value}",
                    message_nl=nl,
                    message_en=en,
                    category=category,
                    score=score,
                    spans=spans,
                ),
            )
        )
        decision = PolicyDecision(
            action=action,
            reasons=reasons,
            attachments=tuple(
                AttachmentDecision(f"foto-{i}", Action.RELEASE) for i in range(photos)
            ),
        )
        store_auto_decision(session=session, post=post, decision=decision)
        return post.pk


def token_for(
    url: str,
    school_id: str,
    staff_id: str,
    *,
    role: str = "teacher",
    groups: tuple[str, ...] = ("groep-5a",),
    ttl_s: int = 300,
    secret: str | None = None,
) -> str:
    return sign_review_token(
        secret=secret or review_secret(url, school_id),
        school_id=school_id,
        staff_id=staff_id,
        role=role,
        groups=groups,
        name=f"Reviewer {staff_id}",
        ttl_s=ttl_s,
    )


@dataclass
class Env:
    url: str
    key_a: str
    key_b: str
    client: TestClient

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key_a}"}

    def login(self, staff_id: str, school_id: str = "school-a", **claims: object) -> None:
        """Sign this test client in as a staff member (clears any earlier session)."""
        self.client.cookies.clear()
        token = token_for(self.url, school_id, staff_id, **claims)  # type: ignore[arg-type]
        r = self.client.get("/review/login", params={"token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text

    def csrf(self) -> str:
        import re

        page = self.client.get("/review").text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        return found.group(1)


@pytest.fixture
def env(configure: Configure, sqlite_url: str) -> Iterator[Env]:
    configure(database_url=sqlite_url, rate_limit="10000/minute", review_cookie_secure="false")
    key_a = add_school(sqlite_url, "school-a")
    key_b = add_school(sqlite_url, "school-b")
    with TestClient(create_app()) as client:
        yield Env(sqlite_url, key_a, key_b, client)
