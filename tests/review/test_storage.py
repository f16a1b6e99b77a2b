"""The queue's storage on both databases: decisions, scope, reports, appeals, escalation,
the audit export."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from moderation.domain import Action, Category
from moderation.errors import Conflict, InvalidInput, NotFound
from moderation.schemas import RosterIn
from moderation.storage import review
from moderation.storage.audit import SCHOOL_TZ, AuditRow, csv_lines, iter_audit, parse_period
from moderation.storage.db import get_sessionmaker, session_scope
from moderation.storage.review import ReviewAction
from moderation.storage.roster import apply_roster
from moderation.storage.schools import create_school
from moderation.storage.tables import AuditEvent, Callback, Decision, Flag, Post
from tests.review.conftest import ROSTER, WEBHOOK, seed_post

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
            webhook_url=WEBHOOK,
        )
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**ROSTER), source="t")
    return school_id


def reviewer(url: str, school_id: str, staff_id: str) -> review.Reviewer:
    with session_scope(url) as session:
        return review.reviewer_from_roster(session=session, school_id=school_id, staff_id=staff_id)


def decide(url: str, school_id: str, staff_id: str, post_id: str, action: ReviewAction, **kw):
    who = reviewer(url, school_id, staff_id)
    with session_scope(url) as session:
        return review.review_post(
            session=session, reviewer=who, action=action, post_id=post_id, **kw
        )


def flags_of(url: str, post_pk: int) -> list[Flag]:
    with session_scope(url) as session:
        return list(session.scalars(select(Flag).where(Flag.post_pk == post_pk).order_by(Flag.pk)))


def test_release_closes_the_flag_appends_a_decision_audits_and_queues_the_callback(
    db_url: str, school: str
):
    pk = seed_post(db_url, school, "p1", photos=1)
    outcome = decide(db_url, school, "mw-1", "p1", ReviewAction.RELEASE)
    assert (outcome.sequence, outcome.status.value) == (2, "released")
    assert outcome.callback_pk is not None
    [flag] = flags_of(db_url, pk)
    assert (flag.status, flag.closed_by) == ("closed", "mw-1")
    assert flag.closed_at is not None
    with session_scope(db_url) as session:
        post = session.get(Post, pk)
        assert post is not None and post.status == "released"
        decisions = session.scalars(
            select(Decision).where(Decision.post_pk == pk).order_by(Decision.sequence)
        ).all()
        assert [(d.sequence, d.action, d.decided_by) for d in decisions] == [
            (1, "hold", "auto"),
            (2, "release", "mw-1"),
        ]
        assert decisions[1].attachments == [{"id": "foto-0", "action": "release", "reasons": []}]
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.post_pk == pk, AuditEvent.action.like("review.%"))
        ).one()
        assert (event.actor, event.action) == ("teacher:mw-1", "review.release")
        assert event.detail["sequence"] == 2 and event.detail["flag"] == "hold"
        callback = session.get(Callback, outcome.callback_pk)
        assert callback is not None
        assert callback.idempotency_key == f"{school}:p1:decision:2"
        assert callback.payload["decision"]["action"] == "release"
        assert callback.payload["decision"]["decided_by"] == "mw-1"
        assert callback.payload["status"] == "released"


def test_a_decided_flag_is_already_decided(db_url: str, school: str):
    seed_post(db_url, school, "p1")
    decide(db_url, school, "mw-1", "p1", ReviewAction.RELEASE)
    with pytest.raises(Conflict) as caught:
        decide(db_url, school, "mw-3", "p1", ReviewAction.REJECT, reason_code="tone")
    assert caught.value.code == "already_decided"
    seed_post(db_url, school, "p2", action=Action.RELEASE, word=None, text="Fijn weekend!")
    with pytest.raises(Conflict) as caught:
        decide(db_url, school, "mw-1", "p2", ReviewAction.RELEASE)
    assert caught.value.code == "not_in_queue"


def test_two_reviewers_at_once_give_one_decision(db_url: str, school: str):
    pk = seed_post(db_url, school, "p1")
    first, second = reviewer(db_url, school, "mw-1"), reviewer(db_url, school, "mw-3")
    maker = get_sessionmaker(db_url)
    results: list[str] = []

    with maker() as s1:
        review.review_post(session=s1, reviewer=first, action=ReviewAction.RELEASE, post_pk=pk)

        def other() -> None:
            with maker() as s2:
                try:
                    review.review_post(
                        session=s2,
                        reviewer=second,
                        action=ReviewAction.REJECT,
                        reason_code="tone",
                        post_pk=pk,
                    )
                    s2.commit()
                    results.append("decided")
                except Conflict as exc:
                    s2.rollback()
                    results.append(exc.code)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=0.5)  # on PostgreSQL it waits for the row lock
        s1.commit()
    thread.join(timeout=30)
    assert results == ["already_decided"]
    with session_scope(db_url) as session:
        assert (
            session.scalar(select(func.count()).select_from(Decision).where(Decision.post_pk == pk))
            == 2
        )


def test_scope_groups_admins_and_schools(db_url: str, school: str):
    seed_post(db_url, school, "in-5a", group="groep-5a")
    seed_post(db_url, school, "in-6b", group="groep-6b", author=("parent-3", "parent"))
    seed_post(
        db_url,
        school,
        "school-wide",
        channel={"type": "school", "id": "nieuws"},
        author=("mw-1", "teacher"),
    )
    with session_scope(db_url) as session:

        def ids(staff_id: str) -> list[str]:
            who = review.reviewer_from_roster(session=session, school_id=school, staff_id=staff_id)
            return [i.post_id for i in review.list_queue(session=session, reviewer=who)]

        assert ids("mw-1") == ["in-5a"]
        assert ids("mw-2") == ["in-6b"]
        assert ids("dir-1") == ["in-5a", "in-6b", "school-wide"]
    with pytest.raises(NotFound) as caught:
        decide(db_url, school, "mw-1", "in-6b", ReviewAction.RELEASE)
    assert caught.value.code == "unknown_post"
    with pytest.raises(NotFound):
        decide(db_url, school, "mw-1", "school-wide", ReviewAction.RELEASE)
    decide(db_url, school, "dir-1", "school-wide", ReviewAction.RELEASE)

    other = f"s-{secrets.token_hex(3)}"
    with session_scope(db_url) as session:
        create_school(session=session, school_id=other, name="Elders", pepper=PEPPER)
        apply_roster(session=session, school_id=other, roster=RosterIn(**ROSTER), source="t")
    with pytest.raises(NotFound):
        decide(db_url, other, "dir-1", "in-5a", ReviewAction.RELEASE)
    with session_scope(db_url) as session:
        admin = review.reviewer_from_roster(session=session, school_id=other, staff_id="dir-1")
        assert review.list_queue(session=session, reviewer=admin) == []
    with pytest.raises(InvalidInput) as invalid:
        reviewer(db_url, school, "nobody")
    assert invalid.value.code == "unknown_reviewer"


def test_queue_item_shows_highlight_scores_severity_author_and_channel(db_url: str, school: str):
    seed_post(db_url, school, "p1", photos=2, score=0.72)
    with session_scope(db_url) as session:
        who = review.reviewer_from_roster(session=session, school_id=school, staff_id="mw-1")
        [item] = review.list_queue(session=session, reviewer=who)
    assert [s.text for s in item.segments if s.marked] == ["kankerjuf"]
    assert item.scores == {"insult": 0.72}
    assert item.severity == 0.72
    assert item.reasons[0].message_nl.startswith("Je bericht")
    assert (item.author_name, item.channel_name, item.group_id) == (
        "Eva de Vries",
        "Groep 5a",
        "groep-5a",
    )
    assert [a.id for a in item.attachments] == ["foto-0", "foto-1"]
    assert item.escalation is None


def test_filters(db_url: str, school: str):
    seed_post(db_url, school, "insult")
    seed_post(
        db_url,
        school,
        "threat",
        "Ik maak je af",
        word="maak je af",
        category=Category.THREAT,
        score=0.6,
    )
    seed_post(db_url, school, "by-teacher", author=("mw-3", "teacher"))
    with session_scope(db_url) as session:
        who = review.reviewer_from_roster(session=session, school_id=school, staff_id="mw-1")

        def ids(**kw: object) -> list[str]:
            filters = review.QueueFilters(**kw)  # type: ignore[arg-type]
            return [
                i.post_id for i in review.list_queue(session=session, reviewer=who, filters=filters)
            ]

        assert ids(category="threat") == ["threat"]
        assert ids(author_role="teacher") == ["by-teacher"]
        assert ids(group_id="groep-6b") == []
        assert ids(escalated_only=True) == ["threat"]  # threats escalate at once


def test_reject_needs_a_reason_and_rephrase_and_blur(db_url: str, school: str):
    pk = seed_post(db_url, school, "p1")
    with pytest.raises(InvalidInput) as caught:
        decide(db_url, school, "mw-1", "p1", ReviewAction.REJECT)
    assert caught.value.code == "reason_required"
    with pytest.raises(InvalidInput) as caught:
        decide(db_url, school, "mw-1", "p1", ReviewAction.REJECT, reason_code="nope")
    assert caught.value.code == "unknown_reason"
    assert flags_of(db_url, pk)[0].status == "open"  # nothing was written
    out = decide(
        db_url,
        school,
        "mw-1",
        "p1",
        ReviewAction.REJECT,
        reason_code="tone",
        reason_text="Bel me gerust even.",
    )
    assert out.status.value == "rejected"
    assert out.public.decision is not None
    [reason] = out.public.decision.reasons
    assert reason.code == "review_tone"
    assert reason.message_nl.endswith("Bel me gerust even.")
    assert "respectvolle" in reason.message_nl

    seed_post(db_url, school, "p2")
    out = decide(db_url, school, "mw-1", "p2", ReviewAction.REPHRASE)
    assert out.status.value == "rejected"
    assert out.public.decision is not None
    assert out.public.decision.reasons[0].code == "review_rephrase"

    seed_post(db_url, school, "p3", photos=2)
    out = decide(db_url, school, "mw-1", "p3", ReviewAction.RELEASE_BLUR)
    assert (out.status.value, out.blur) == ("released", True)
    with session_scope(db_url) as session:
        callback = session.get(Callback, out.callback_pk)
        assert callback is not None
        assert [a["blur"] for a in callback.payload["decision"]["attachments"]] == [True, True]
        decision = session.scalars(
            select(Decision)
            .where(Decision.sequence == 2)
            .join(Post)
            .where(Post.external_id == "p3", Post.school_id == school)
        ).one()
        assert all(a["blur"] for a in decision.attachments)


def test_reports_open_a_flag_on_a_released_post_that_stays_released(db_url: str, school: str):
    pk = seed_post(db_url, school, "p1", "Kijk eens wat ik vond", word=None, action=Action.RELEASE)
    with session_scope(db_url) as session:
        flag = review.report_post(
            session=session,
            school_id=school,
            post_id="p1",
            reporter_id="parent-3",
            reporter_role="parent",
            text="Dit is een foto van mijn kind zonder toestemming",
        )
        assert (flag.kind, flag.reason, flag.status) == ("report", "reported", "open")
    with session_scope(db_url) as session:
        again = review.report_post(
            session=session,
            school_id=school,
            post_id="p1",
            reporter_id="mw-3",
            reporter_role="teacher",
            text="Klopt, graag weghalen",
        )
        assert len(again.detail["reports"]) == 2
    [flag] = flags_of(db_url, pk)
    assert flag.status == "open"
    with session_scope(db_url) as session:
        post = session.get(Post, pk)
        assert post is not None and post.status == "released"
        events = session.scalars(select(AuditEvent.action).where(AuditEvent.post_pk == pk)).all()
        assert events.count("post.reported") == 2
    decide(db_url, school, "mw-1", "p1", ReviewAction.REJECT, reason_code="photo")
    with session_scope(db_url) as session:
        post = session.get(Post, pk)
        assert post is not None and post.status == "rejected"

    seed_post(db_url, school, "p2", action=Action.REJECT)
    with session_scope(db_url) as session, pytest.raises(Conflict) as caught:
        review.report_post(
            session=session,
            school_id=school,
            post_id="p2",
            reporter_id="parent-1",
            reporter_role="parent",
            text="x",
        )
    assert caught.value.code == "not_released"
    with session_scope(db_url) as session, pytest.raises(InvalidInput) as invalid:
        review.report_post(
            session=session,
            school_id=school,
            post_id="p1",
            reporter_id="stranger",
            reporter_role="parent",
            text="x",
        )
    assert invalid.value.code == "unknown_reporter"


def appeal(url: str, school: str, post_id: str, author: str = "parent-1") -> Flag:
    with session_scope(url) as session:
        return review.appeal_post(
            session=session,
            school_id=school,
            post_id=post_id,
            author_id=author,
            text="Ik bedoelde het als grap over mezelf.",
        )


def test_appeals_only_by_the_author_of_a_rejected_post_once(db_url: str, school: str):
    seed_post(db_url, school, "held")
    with pytest.raises(Conflict) as caught:
        appeal(db_url, school, "held")
    assert caught.value.code == "not_rejected"
    seed_post(db_url, school, "auto-rejected", action=Action.REJECT, score=0.95)
    with pytest.raises(InvalidInput) as invalid:
        appeal(db_url, school, "auto-rejected", author="parent-3")
    assert invalid.value.code == "not_the_author"
    flag = appeal(db_url, school, "auto-rejected")
    assert (flag.kind, flag.reason) == ("appeal", "appeal")
    assert flag.detail["rejected_by"] == "auto"
    with pytest.raises(Conflict) as caught:
        appeal(db_url, school, "auto-rejected")
    assert caught.value.code == "already_appealed"
    out = decide(db_url, school, "mw-1", "auto-rejected", ReviewAction.RELEASE)
    assert out.status.value == "released"
    with pytest.raises(Conflict) as caught:
        appeal(db_url, school, "auto-rejected")
    assert caught.value.code == "not_rejected"


def test_the_first_reviewer_cannot_decide_the_appeal_when_a_colleague_can(db_url: str, school: str):
    seed_post(db_url, school, "p1")
    decide(db_url, school, "mw-1", "p1", ReviewAction.REJECT, reason_code="tone")
    flag = appeal(db_url, school, "p1")
    assert flag.detail["rejected_by"] == "mw-1"
    with session_scope(db_url) as session:
        who = review.reviewer_from_roster(session=session, school_id=school, staff_id="mw-3")
        [item] = review.list_queue(session=session, reviewer=who)
        assert item.kind == "appeal" and item.detail["text"].startswith("Ik bedoelde")
    with pytest.raises(Conflict) as caught:
        decide(db_url, school, "mw-1", "p1", ReviewAction.RELEASE)
    assert caught.value.code == "appeal_needs_other_reviewer"
    out = decide(db_url, school, "mw-3", "p1", ReviewAction.RELEASE)
    assert out.sequence == 3


def test_the_only_reviewer_of_a_group_may_decide_its_appeal(db_url: str):
    school_id = f"s-{secrets.token_hex(3)}"
    small = {
        "groups": [{"id": "g1", "name": "Groep 1"}],
        "staff": [{"id": "t1", "name": "Juf Els", "role": "teacher", "group_ids": ["g1"]}],
        "parents": [],
    }
    with session_scope(db_url) as session:
        create_school(session=session, school_id=school_id, name="Klein", pepper=PEPPER)
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**small), source="t")
    seed_post(db_url, school_id, "p1", group="g1", author=("ouder-x", "parent"))
    decide(db_url, school_id, "t1", "p1", ReviewAction.REJECT, reason_code="tone")
    appeal(db_url, school_id, "p1", author="ouder-x")
    assert decide(db_url, school_id, "t1", "p1", ReviewAction.RELEASE).sequence == 3


def test_escalation_of_threats_at_once_and_of_overdue_items_after_a_school_day(
    db_url: str, school: str
):
    threat = seed_post(
        db_url,
        school,
        "threat",
        "Ik maak je af",
        word="maak je af",
        category=Category.THREAT,
        score=0.6,
    )
    old = seed_post(db_url, school, "old")
    fresh = seed_post(db_url, school, "fresh")
    monday_9 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 9:00 in Amsterdam
    with session_scope(db_url) as session:
        session.execute(
            update(Flag).where(Flag.post_pk.in_([threat, old, fresh])).values(created_at=monday_9)
        )
        session.execute(
            update(Flag)
            .where(Flag.post_pk == fresh)
            .values(created_at=monday_9 + timedelta(days=1))
        )
    tuesday_10 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 510 school minutes after Mon 9:00
    with session_scope(db_url) as session:
        escalated = review.escalate_due(session, tuesday_10)
    by_post = {f.post_pk: f for pk in (threat, old, fresh) for f in flags_of(db_url, pk)}
    assert by_post[threat].escalation == "threat"
    assert by_post[old].escalation == "overdue"
    assert by_post[fresh].escalated_at is None
    ours = {by_post[pk].pk for pk in (threat, old, fresh)}
    assert ours & set(escalated) == {by_post[threat].pk, by_post[old].pk}
    with session_scope(db_url) as session:
        assert not ours & set(review.escalate_due(session, tuesday_10))  # idempotent
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "flag.escalated", AuditEvent.school_id == school
            )
        ).all()
        assert sorted(e.detail["escalation"] for e in events) == ["overdue", "threat"]


def test_audit_export_covers_the_period_and_defuses_formulas(db_url: str, school: str):
    seed_post(db_url, school, "p1")
    decide(db_url, school, "mw-1", "p1", ReviewAction.REJECT, reason_text="=HYPERLINK(1)")
    today = datetime.now(SCHOOL_TZ).date().isoformat()  # a date means a Dutch day
    lo, hi = parse_period(today, today)
    with session_scope(db_url) as session:
        lines = list(csv_lines(iter_audit(session=session, school_id=school, start=lo, end=hi)))
    assert lines[0].startswith("at_utc,at_local,actor,action,post_id")
    body = "".join(lines)
    assert "post.received" in body and "decision.hold" in body and "review.reject" in body
    assert "teacher:mw-1" in body
    row = AuditRow(
        at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        actor="=cmd|' /C calc'!A0",
        action="x",
        post_id="+1",
        channel=None,
        group=None,
        detail={},
    )
    [_, line] = list(csv_lines(iter([row])))
    assert "'=cmd" in line and ",'+1," in line  # a formula never starts a cell
    with pytest.raises(InvalidInput):
        parse_period("2026-03-05", "2026-03-01")
    with pytest.raises(InvalidInput):
        parse_period("gisteren", "2026-03-01")
    with session_scope(db_url) as session:
        past = parse_period("2020-01-01", "2020-01-31")
        assert list(iter_audit(session=session, school_id=school, start=past[0], end=past[1])) == []
