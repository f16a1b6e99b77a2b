"""The pipeline steps in-process on SQLite: idempotent checks, fail-closed, the sweeper.

Tasks the steps send go to the embedded SQLite broker; no worker consumes them here."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from moderation.config import get_settings
from moderation.schemas import PostCreate, RosterIn
from moderation.storage.db import session_scope
from moderation.storage.posts import IntakeLimits, create_post
from moderation.storage.roster import apply_roster
from moderation.storage.tables import Attachment, Callback, Decision, Post, utcnow
from tests.conftest import Configure, new_school
from tests.helpers import ROSTER, attachment, post_body
from workers import pipeline

LIMITS = IntakeLimits(max_text_chars=1000, max_attachments=5, max_attachment_bytes=1_000_000)


@pytest.fixture
def school(configure: Configure, sqlite_url: str) -> str:
    configure(database_url=sqlite_url, text_scorer="fake", max_enqueues="2")
    new_school(sqlite_url, "s1", webhook_url="http://127.0.0.1:9/cb")
    with session_scope(sqlite_url) as session:
        apply_roster(session=session, school_id="s1", roster=RosterIn(**ROSTER), source="t")
    return "s1"


def submit(url: str, body: dict) -> int:
    with session_scope(url) as session:
        return create_post(
            session=session, school_id="s1", post_in=PostCreate(**body), limits=LIMITS
        ).post.pk


def status(url: str, pk: int) -> str:
    with session_scope(url) as session:
        post = session.get(Post, pk)
        assert post is not None
        return post.status


def count(url: str, table: type, pk: int) -> int:
    with session_scope(url) as session:
        return int(
            session.scalar(select(func.count()).select_from(table).where(table.post_pk == pk)) or 0
        )


def test_text_check_decides_once_even_when_run_twice(school: str, sqlite_url: str):
    pk = submit(sqlite_url, post_body("p1", "jij FAKE_INSULT"))
    settings = get_settings()
    pipeline.run_text_check(settings, pk)
    pipeline.run_text_check(settings, pk)
    pipeline.decide_if_ready(settings, pk)
    assert status(sqlite_url, pk) == "rejected"
    assert count(sqlite_url, Decision, pk) == 1
    assert count(sqlite_url, Callback, pk) == 1


def test_post_waits_for_every_check(school: str, sqlite_url: str):
    pk = submit(sqlite_url, post_body("p2", "mooi!", attachments=[attachment("a1")]))
    settings = get_settings()
    pipeline.run_text_check(settings, pk)
    assert status(sqlite_url, pk) == "pending"
    pipeline.run_media_check(settings, pk)
    assert status(sqlite_url, pk) == "released"


def test_released_copy_has_no_metadata(school: str, sqlite_url: str):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0110] = "Telefoon van juf"  # camera model
    Image.new("RGB", (40, 30), "green").save(buf, "JPEG", exif=exif)
    pk = submit(sqlite_url, post_body("p3", "", attachments=[attachment("a", buf.getvalue())]))
    pipeline.run_media_check(get_settings(), pk)
    with session_scope(sqlite_url) as session:
        att = session.scalars(select(Attachment).where(Attachment.post_pk == pk)).one()
        assert att.released_data is not None
        assert dict(Image.open(io.BytesIO(att.released_data)).getexif()) == {}
        assert dict(Image.open(io.BytesIO(att.data or b"")).getexif()) != {}


def test_unreadable_stored_attachment_is_held(school: str, sqlite_url: str):
    pk = submit(sqlite_url, post_body("p4", "", attachments=[attachment("a")]))
    with session_scope(sqlite_url) as session:
        session.execute(
            update(Attachment).where(Attachment.post_pk == pk).values(data=b"\xff\xd8\xff broken")
        )
    pipeline.run_media_check(get_settings(), pk)
    assert status(sqlite_url, pk) == "held"


def test_sweeper_requeues_then_fails_closed(school: str, sqlite_url: str):
    pk = submit(sqlite_url, post_body("p5", "hallo"))
    settings = get_settings()

    def age() -> None:
        with session_scope(sqlite_url) as session:
            session.execute(
                update(Post).where(Post.pk == pk).values(updated_at=utcnow() - timedelta(hours=1))
            )

    assert pipeline.sweep(settings).requeued == 0  # fresh: left alone
    age()
    assert pipeline.sweep(settings).requeued == 1
    assert status(sqlite_url, pk) == "pending"
    age()
    report = pipeline.sweep(settings)  # over MAX_ENQUEUES=2: held, never released unscored
    assert (report.requeued, report.failed) == (0, 1)
    assert status(sqlite_url, pk) == "held"
    with session_scope(sqlite_url) as session:
        decision = session.scalars(select(Decision).where(Decision.post_pk == pk)).one()
        assert [r["code"] for r in decision.reasons] == ["scoring_failed"]


def test_sweeper_resends_lost_callbacks(school: str, sqlite_url: str):
    pk = submit(sqlite_url, post_body("p6", "hallo"))
    settings = get_settings()
    pipeline.run_text_check(settings, pk)
    assert pipeline.sweep(settings).callbacks == 0
    with session_scope(sqlite_url) as session:
        session.execute(update(Callback).values(updated_at=utcnow() - timedelta(hours=1)))
    assert pipeline.sweep(settings).callbacks == 1
    assert pipeline.sweep(settings).callbacks == 0  # its clock was restarted


def test_sweeper_resends_a_never_tried_callback_after_the_pending_timeout(
    school: str, sqlite_url: str
):
    """A callback whose task the broker lost before any attempt is as lost as a pending
    post (``PENDING_TIMEOUT_S``); one in its retry backoff waits ``CALLBACK_STALE_AFTER_S``."""
    tried, never = (submit(sqlite_url, post_body(p, "hallo")) for p in ("p7", "p8"))
    settings = get_settings()
    for pk in (tried, never):
        pipeline.run_text_check(settings, pk)
    three_minutes_ago = utcnow() - timedelta(minutes=3)  # past 120 s, short of 15 min
    with session_scope(sqlite_url) as session:
        session.execute(update(Callback).values(updated_at=three_minutes_ago))
        session.execute(update(Callback).where(Callback.post_pk == tried).values(attempts=1))
    assert pipeline.sweep(settings).callbacks == 1
    with session_scope(sqlite_url) as session:
        fresh = session.scalars(
            select(Callback.post_pk).where(Callback.updated_at > three_minutes_ago)
        ).all()
    assert fresh == [never]  # the one re-sent had its clock restarted


def test_a_stale_window_inside_the_callback_backoff_is_refused_at_start():
    """The sweeper would re-send callbacks that are only waiting for their retry."""
    from pydantic import ValidationError

    from moderation.config import Settings

    with pytest.raises(ValidationError, match="CALLBACK_STALE_AFTER_S"):
        Settings(callback_backoff_cap_s=600, callback_stale_after_s=300)
    assert Settings(callback_backoff_cap_s=2, callback_stale_after_s=5).callback_stale_after_s == 5
