"""Storage on both supported databases: SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

from moderation.domain import Action, Category, CategoryScore, TextScore
from moderation.errors import Conflict, InvalidInput
from moderation.policy import DEFAULT_POLICY, CheckResults, decide
from moderation.schemas import PostCreate, RosterIn
from moderation.storage.db import session_scope
from moderation.storage.posts import (
    TEXT_CHECK,
    IntakeLimits,
    checks_of,
    create_post,
    post_context,
    post_public,
    record_check,
    store_auto_decision,
)
from moderation.storage.roster import apply_roster, consent_history, current_consent, get_student
from moderation.storage.schools import create_school, school_for_key
from moderation.storage.tables import AuditEvent, Callback, Decision, Flag, Post
from tests.helpers import ROSTER, post_body

LIMITS = IntakeLimits(max_text_chars=100, max_attachments=2, max_attachment_bytes=10_000)
PEPPER = "test-pepper-123"


@pytest.fixture
def school(db_url: str) -> str:
    school_id = f"s-{secrets.token_hex(3)}"
    with session_scope(db_url) as session:
        create_school(
            session=session,
            school_id=school_id,
            name="De Marel",
            pepper=PEPPER,
            webhook_url="http://127.0.0.1:9/cb",
        )
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**ROSTER), source="test")
    return school_id


def test_api_key_is_stored_only_as_a_hash(db_url: str):
    school_id = f"s-{secrets.token_hex(3)}"
    with session_scope(db_url) as session:
        new = create_school(session=session, school_id=school_id, name="X", pepper=PEPPER)
        assert new.api_key not in new.school.api_key_hash
        assert school_for_key(session=session, api_key=new.api_key, pepper=PEPPER).id == school_id


def test_create_post_is_idempotent_and_conflicts_on_other_body(db_url: str, school: str):
    body = PostCreate(**post_body("p1"))
    with session_scope(db_url) as session:
        assert create_post(session=session, school_id=school, post_in=body, limits=LIMITS).created
    with session_scope(db_url) as session:
        again = create_post(session=session, school_id=school, post_in=body, limits=LIMITS)
        assert not again.created
    with session_scope(db_url) as session, pytest.raises(Conflict):
        create_post(
            session=session,
            school_id=school,
            post_in=PostCreate(**post_body("p1", "anders")),
            limits=LIMITS,
        )


def test_invalid_post_writes_nothing(db_url: str, school: str):
    with pytest.raises(InvalidInput), session_scope(db_url) as session:
        create_post(
            session=session,
            school_id=school,
            post_in=PostCreate(**post_body("p2", "x" * 101)),
            limits=LIMITS,
        )
    with session_scope(db_url) as session:
        assert (
            session.scalar(select(func.count()).select_from(Post).where(Post.school_id == school))
            == 0
        )


def test_decision_is_stored_once_with_flag_audit_and_callback(db_url: str, school: str):
    with session_scope(db_url) as session:
        post = create_post(
            session=session,
            school_id=school,
            post_in=PostCreate(**post_body("p3", "rotzooi")),
            limits=LIMITS,
        ).post
    score = TextScore("t", {Category.INSULT: CategoryScore(Category.INSULT, 0.6, ((0, 7),))})
    with session_scope(db_url) as session:
        assert record_check(
            session=session,
            post_pk=post.pk,
            check_name=TEXT_CHECK,
            scorer="t",
            ok=True,
            result=score.to_json(),
        )
        # a redelivered task writes the same check again: a no-op
        assert not record_check(
            session=session,
            post_pk=post.pk,
            check_name=TEXT_CHECK,
            scorer="t",
            ok=True,
            result=score.to_json(),
        )
    decision = decide(post_context(post), CheckResults(text=score), DEFAULT_POLICY)
    assert decision.action is Action.HOLD
    for attempt in range(2):
        with session_scope(db_url) as session:
            fresh = session.get(Post, post.pk)
            assert fresh is not None
            callback = store_auto_decision(session=session, post=fresh, decision=decision)
            assert (callback is not None) == (attempt == 0)
    with session_scope(db_url) as session:
        fresh = session.get(Post, post.pk)
        assert fresh is not None and fresh.status == "held"
        assert len(checks_of(session=session, post_pk=post.pk)) == 1
        for table in (Decision, Flag, Callback):
            n = session.scalar(
                select(func.count()).select_from(table).where(table.post_pk == post.pk)
            )
            assert n == 1, table
        events = session.scalars(select(AuditEvent.action).where(AuditEvent.post_pk == post.pk))
        assert list(events) == ["post.received", "decision.hold"]
        public = post_public(session=session, post=fresh)
        assert public.decision is not None
        assert public.decision.reasons[0].spans == [(0, 7)]


def test_consent_no_wins_and_no_answer_is_no_consent(db_url: str, school: str):
    roster = RosterIn(
        consent=[
            {"student_id": "ll-1", "parent_id": "parent-2", "scope": "website", "granted": True},
            {"student_id": "ll-1", "parent_id": "parent-1", "scope": "website", "granted": False},
            {"student_id": "ll-1", "parent_id": "parent-1", "scope": "newsletter", "granted": True},
        ]
    )
    with session_scope(db_url) as session:
        apply_roster(session=session, school_id=school, roster=roster, source="test")
        student = get_student(session=session, school_id=school, student_id="ll-1")
        state = current_consent(consent_history(session=session, student=student))
    assert state["app"] is True  # both parents said yes
    assert state["website"] is False  # one parent said no
    assert state["newsletter"] is True  # the only answering parent said yes
    assert state["social_media"] is False  # nobody answered


def test_consent_from_someone_not_a_parent_is_refused(db_url: str, school: str):
    roster = RosterIn(
        consent=[
            {"student_id": "ll-3", "parent_id": "parent-1", "scope": "app", "granted": True},
        ]
    )
    with pytest.raises(InvalidInput) as info, session_scope(db_url) as session:
        apply_roster(session=session, school_id=school, roster=roster, source="test")
    assert info.value.code == "not_a_parent_of_student"
