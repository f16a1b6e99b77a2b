"""The retention job on both databases, with the clock passed in.

Posts are made as the pipeline makes them (intake, a stored check, the automatic
decision; ``tests.review.conftest.seed_post``), then :func:`purge_expired` runs at a
chosen ``now``: nothing here waits 30 days, and nothing is backdated except in the
sweeper test, which runs on the real clock.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from moderation.api.main import create_app
from moderation.config import get_settings
from moderation.domain import Action
from moderation.policy_document import parse_document
from moderation.storage import review
from moderation.storage.db import session_scope
from moderation.storage.migrate import downgrade, upgrade
from moderation.storage.policies import set_policy
from moderation.storage.retention import AUDIT_ACTION, purge_expired, purge_school
from moderation.storage.tables import (
    Attachment,
    AuditEvent,
    Callback,
    Decision,
    Flag,
    Post,
    Score,
    utcnow,
)
from tests.conftest import Configure
from tests.review.conftest import add_school, seed_post
from workers import pipeline

TEXT = "Wat een kankerjuf is dat zeg, retentie-merkteken"
DAY = timedelta(days=1)


def school_id() -> str:
    return f"ret-{secrets.token_hex(3)}"


def post_row(url: str, school: str, post_id: str) -> Post:
    with session_scope(url) as session:
        post = session.scalars(
            select(Post).where(Post.school_id == school, Post.external_id == post_id)
        ).one()
        session.expunge(post)
        return post


def attachment_bytes(url: str, post_pk: int) -> list[tuple[bytes | None, bytes | None]]:
    with session_scope(url) as session:
        rows = session.scalars(select(Attachment).where(Attachment.post_pk == post_pk)).all()
        return [(a.data, a.released_data) for a in rows]


def give_released_copies(url: str, post_pk: int) -> None:
    """As the media check does: a metadata-free copy beside each original."""
    with session_scope(url) as session:
        session.execute(
            update(Attachment).where(Attachment.post_pk == post_pk).values(released_data=b"clean")
        )


def purge(url: str, school: str, now: datetime) -> tuple[int, int]:
    with session_scope(url) as session:
        report = purge_expired(session, now, school_ids=[school])
    return report.posts, report.attachments


def kept_rows(url: str, post_pk: int) -> dict[str, int]:
    """How many decisions, scores, flags, callbacks and audit events the post has."""
    with session_scope(url) as session:
        return {
            table.__name__: int(
                session.scalar(
                    select(func.count()).select_from(table).where(table.post_pk == post_pk)
                )
                or 0
            )
            for table in (Decision, Score, Flag, Callback, AuditEvent)
        }


def test_released_and_rejected_posts_are_purged_after_the_period(db_url: str):
    school = school_id()
    add_school(db_url, school)
    released = seed_post(db_url, school, "vrij", TEXT, action=Action.RELEASE, photos=2)
    rejected = seed_post(db_url, school, "af", TEXT, action=Action.REJECT)
    give_released_copies(db_url, released)
    before = {pk: kept_rows(db_url, pk) for pk in (released, rejected)}
    now = utcnow()

    assert purge(db_url, school, now + 29 * DAY) == (0, 0)  # within the 30 days
    assert post_row(db_url, school, "vrij").text == TEXT

    assert purge(db_url, school, now + 31 * DAY) == (2, 2)
    for post_id, pk in (("vrij", released), ("af", rejected)):
        post = post_row(db_url, school, post_id)
        assert post.text == ""
        assert post.purged_at is not None
        assert post.status in ("released", "rejected")  # the decision stands
        assert kept_rows(db_url, pk) == before[pk]  # the batch's event names no single post
    assert attachment_bytes(db_url, released) == [(None, None), (None, None)]
    assert purge(db_url, school, now + 40 * DAY) == (0, 0)  # once only


def test_nothing_of_the_text_survives_but_decisions_scores_and_audit_do(db_url: str):
    school = school_id()
    add_school(db_url, school)
    pk = seed_post(db_url, school, "p1", TEXT, action=Action.REJECT)
    purge(db_url, school, utcnow() + 31 * DAY)
    with session_scope(db_url) as session:
        decision = session.scalars(select(Decision).where(Decision.post_pk == pk)).one()
        score = session.scalars(select(Score).where(Score.post_pk == pk)).one()
        callback = session.scalars(select(Callback).where(Callback.post_pk == pk)).one()
        assert decision.action == "reject"
        assert decision.reasons[0]["code"] == "text_insult"
        start = TEXT.index("kankerjuf")
        assert decision.reasons[0]["spans"] == [[start, start + len("kankerjuf")]]
        assert score.result["categories"]["insult"]["score"] == 0.7
        stored = repr((decision.reasons, score.result, callback.payload))
        assert "kankerjuf" not in stored and "merkteken" not in stored
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.school_id == school, AuditEvent.action == AUDIT_ACTION
            )
        ).one()
        assert event.actor == "retention"
        assert event.detail["post_ids"] == ["p1"]
        assert event.detail["retention_days"] == 30
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.post_pk == pk).order_by(AuditEvent.pk)
        ).all()
        assert actions == ["post.received", "decision.reject"]


def test_held_posts_wait_and_a_later_human_decision_restarts_the_clock(db_url: str):
    school = school_id()
    add_school(db_url, school)
    held = seed_post(db_url, school, "wacht", TEXT, action=Action.HOLD)
    decided = seed_post(db_url, school, "later", TEXT, action=Action.HOLD, photos=1)
    now = utcnow()
    with session_scope(db_url) as session:
        reviewer = review.reviewer_from_roster(session=session, school_id=school, staff_id="mw-1")
        review.review_post(
            session=session,
            reviewer=reviewer,
            action=review.ReviewAction.RELEASE,
            post_pk=decided,
            now=now + 10 * DAY,  # the teacher decided ten days after the hold
        )

    assert purge(db_url, school, now + 365 * DAY) == (1, 1)  # the decided one only
    assert post_row(db_url, school, "wacht").text == TEXT  # still held: waits
    assert post_row(db_url, school, "wacht").purged_at is None
    assert attachment_bytes(db_url, held) == []


def test_the_clock_runs_from_the_final_decision(db_url: str):
    school = school_id()
    add_school(db_url, school)
    pk = seed_post(db_url, school, "later", TEXT, action=Action.HOLD)
    now = utcnow()
    with session_scope(db_url) as session:
        reviewer = review.reviewer_from_roster(session=session, school_id=school, staff_id="mw-1")
        review.review_post(
            session=session,
            reviewer=reviewer,
            action=review.ReviewAction.REJECT,
            reason_code="tone",
            post_pk=pk,
            now=now + 10 * DAY,
        )
    assert purge(db_url, school, now + 35 * DAY) == (0, 0)  # 25 days after the decision
    assert purge(db_url, school, now + 41 * DAY) == (1, 0)


def test_an_open_report_or_appeal_keeps_the_post(db_url: str):
    school = school_id()
    add_school(db_url, school)
    reported = seed_post(db_url, school, "gemeld", TEXT, action=Action.RELEASE)
    appealed = seed_post(db_url, school, "bezwaar", TEXT, action=Action.REJECT)
    now = utcnow()
    with session_scope(db_url) as session:
        review.report_post(
            session=session,
            school_id=school,
            post_id="gemeld",
            reporter_id="parent-3",
            reporter_role="parent",
            text="Dit hoort hier niet",
        )
        review.appeal_post(
            session=session,
            school_id=school,
            post_id="bezwaar",
            author_id="parent-1",
            text="Het was een grapje",
        )
    assert purge(db_url, school, now + 60 * DAY) == (0, 0)
    with session_scope(db_url) as session:
        session.execute(
            update(Flag)
            .where(Flag.post_pk.in_([reported, appealed]))
            .values(status="closed", closed_at=now + DAY, closed_by="mw-1")
        )
    assert purge(db_url, school, now + 60 * DAY) == (2, 0)


def test_each_school_has_its_own_period(db_url: str):
    short, default = school_id(), school_id()
    for school in (short, default):
        add_school(db_url, school)
        seed_post(db_url, school, "p1", TEXT, action=Action.RELEASE)
    with session_scope(db_url) as session:
        set_policy(
            session=session,
            school_id=short,
            document=parse_document({"retention_days": 7}),
            actor="test",
        )
    now = utcnow()
    with session_scope(db_url) as session:
        report = purge_expired(session, now + 8 * DAY, school_ids=[short, default])
    assert (report.posts, report.schools) == (1, 1)
    assert post_row(db_url, short, "p1").text == ""
    assert post_row(db_url, default, "p1").text == TEXT


def test_purge_works_in_batches_with_an_audit_event_each(sqlite_url: str):
    school = school_id()
    add_school(sqlite_url, school)
    for i in range(5):
        seed_post(sqlite_url, school, f"p{i}", TEXT, action=Action.RELEASE)
    later = utcnow() + 31 * DAY
    with session_scope(sqlite_url) as session:
        assert purge_school(session, school, later, batch_size=2) == (2, 0)
        assert purge_school(session, school, later, batch_size=2) == (2, 0)
        assert purge_school(session, school, later, batch_size=2) == (1, 0)
        assert purge_school(session, school, later, batch_size=2) == (0, 0)
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION).order_by(AuditEvent.pk)
        ).all()
    assert [e.detail["posts"] for e in events] == [2, 2, 1]
    assert sorted(i for e in events for i in e.detail["post_ids"]) == [f"p{i}" for i in range(5)]


def test_a_naive_clock_counts_as_utc(sqlite_url: str):
    school = school_id()
    add_school(sqlite_url, school)
    seed_post(sqlite_url, school, "p1", TEXT, action=Action.RELEASE)
    naive = (utcnow() + 31 * DAY).astimezone(UTC).replace(tzinfo=None)
    assert purge(sqlite_url, school, naive) == (1, 0)


def test_the_sweeper_purges_on_the_real_clock(configure: Configure, sqlite_url: str):
    configure(database_url=sqlite_url, text_scorer="fake")
    school = school_id()
    add_school(sqlite_url, school)
    old = seed_post(sqlite_url, school, "oud", TEXT, action=Action.RELEASE, photos=1)
    seed_post(sqlite_url, school, "nieuw", TEXT, action=Action.RELEASE)
    give_released_copies(sqlite_url, old)
    long_ago = utcnow() - 31 * DAY
    with session_scope(sqlite_url) as session:  # as if decided a month ago
        session.execute(update(Post).where(Post.pk == old).values(created_at=long_ago))
        session.execute(update(Decision).where(Decision.post_pk == old).values(created_at=long_ago))
    pipeline.sweep(get_settings())
    assert post_row(sqlite_url, school, "oud").text == ""
    assert attachment_bytes(sqlite_url, old) == [(None, None)]
    assert post_row(sqlite_url, school, "nieuw").text == TEXT


def test_migration_0005_goes_down_and_up(sqlite_url: str):
    downgrade(sqlite_url, "0004")
    upgrade(sqlite_url)
    school = school_id()
    add_school(sqlite_url, school)
    seed_post(sqlite_url, school, "p1", TEXT, action=Action.RELEASE)
    assert purge(sqlite_url, school, utcnow() + 31 * DAY) == (1, 0)


def test_after_the_purge_the_api_keeps_the_decision_and_the_photo_is_gone(
    configure: Configure, sqlite_url: str
):
    configure(database_url=sqlite_url)
    school = school_id()
    key = add_school(sqlite_url, school)
    pk = seed_post(sqlite_url, school, "p1", TEXT, action=Action.RELEASE, photos=1)
    give_released_copies(sqlite_url, pk)
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app()) as client:
        assert client.get("/v1/posts/p1/attachments/foto-0", headers=headers).status_code == 200
        purge(sqlite_url, school, utcnow() + 31 * DAY)
        r = client.get("/v1/posts/p1/attachments/foto-0", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (410, "attachment_purged")
        r = client.get("/v1/posts/p1", headers=headers)
        assert (r.status_code, r.json()["decision"]["action"]) == (200, "release")
