"""The photo gate's storage on SQLite and PostgreSQL: face references, the consent
register, erasure, consent withdrawal, hash lists, takedown reports, migration 0004."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, event, func, inspect, select, text

from moderation.domain import Action
from moderation.errors import Conflict, InvalidInput, NotFound
from moderation.schemas import PostCreate, RosterIn
from moderation.storage import image_hashes, references, takedowns
from moderation.storage.db import dispose_engine, get_engine, session_scope
from moderation.storage.migrate import downgrade, upgrade
from moderation.storage.posts import create_post, get_post
from moderation.storage.review import ReviewAction, review_post, reviewer_from_roster
from moderation.storage.roster import apply_roster
from moderation.storage.schools import create_school
from moderation.storage.tables import (
    AuditEvent,
    Callback,
    ConsentAnswer,
    Decision,
    FaceReference,
    ImageHash,
    Parent,
    PostTaggedStudent,
    School,
    Student,
    TakedownReport,
)
from tests.conftest import PG_ADMIN
from tests.helpers import post_body
from tests.moderation.photos import LIMITS, decided_post, photo_bytes, plain_jpeg

PEPPER = "test-pepper-123"
WEBHOOK = "http://127.0.0.1:9/webhook"
EMBEDDING = [i / 128 for i in range(128)]

ROSTER = {
    "groups": [{"id": "groep-5a", "name": "Groep 5a"}, {"id": "groep-6b", "name": "Groep 6b"}],
    "students": [
        {"id": "ll-1", "name": "Sanne de Vries", "group_id": "groep-5a"},
        {"id": "ll-2", "name": "Mohammed El Amrani", "group_id": "groep-5a"},
        {"id": "ll-3", "name": "Daan Jansen", "group_id": "groep-6b"},
        {"id": "ll-4", "name": "Noor Bakker", "group_id": "groep-6b"},
    ],
    "staff": [{"id": "mw-1", "name": "Juf Anouk", "role": "admin", "group_ids": ["groep-5a"]}],
    "parents": [
        {"id": "p-1", "name": "Eva de Vries", "student_ids": ["ll-1"]},
        {"id": "p-2", "name": "Pieter de Vries", "student_ids": ["ll-1"]},
        {"id": "p-3", "name": "Samira El Amrani", "student_ids": ["ll-2"]},
        {"id": "p-4", "name": "Ahmed Jansen", "student_ids": ["ll-3"]},
    ],
    "consent": [
        # ll-1: both parents yes for the app, one says no for the newsletter
        {"student_id": "ll-1", "parent_id": "p-1", "scope": "app", "granted": True},
        {"student_id": "ll-1", "parent_id": "p-2", "scope": "app", "granted": True},
        {"student_id": "ll-1", "parent_id": "p-1", "scope": "newsletter", "granted": True},
        {"student_id": "ll-1", "parent_id": "p-2", "scope": "newsletter", "granted": False},
        # ll-2: no, then yes (the latest answer counts)
        {"student_id": "ll-2", "parent_id": "p-3", "scope": "app", "granted": False},
        {"student_id": "ll-2", "parent_id": "p-3", "scope": "app", "granted": True},
        # ll-3: yes, then no; ll-4: never answered
        {"student_id": "ll-3", "parent_id": "p-4", "scope": "app", "granted": True},
        {"student_id": "ll-3", "parent_id": "p-4", "scope": "app", "granted": False},
    ],
}


def make_school(url: str, roster: dict[str, object] = ROSTER, webhook: str | None = WEBHOOK) -> str:
    school_id = f"s-{secrets.token_hex(3)}"
    with session_scope(url) as session:
        create_school(
            session=session,
            school_id=school_id,
            name="De Marel",
            pepper=PEPPER,
            webhook_url=webhook,
        )
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**roster), source="t")
    return school_id


@pytest.fixture
def school(db_url: str) -> str:
    return make_school(db_url)


def enrol(url: str, school_id: str, student_id: str, embedding: list[float] = EMBEDDING) -> int:
    with session_scope(url) as session:
        return references.enrol_reference(
            session=session,
            school_id=school_id,
            student_id=student_id,
            embedding=embedding,
            model="dlib-resnet-v1",
            enrolled_by="mw-1",
            source="api",
        ).id


# --- references -------------------------------------------------------------------------


def test_reference_is_stored_as_float32_and_audited_without_the_descriptor(db_url, school):
    ref_id = enrol(db_url, school, "ll-1")
    with session_scope(db_url) as session:
        row = session.get(FaceReference, ref_id)
        assert row is not None and len(row.embedding) == 128 * 4
        assert references.unpack_embedding(row.embedding) == pytest.approx(EMBEDDING, abs=1e-7)
        listed = references.list_references(session=session, school_id=school, student_id="ll-1")
        assert [(r.id, r.model, r.enrolled_by, r.source) for r in listed] == [
            (ref_id, "dlib-resnet-v1", "mw-1", "api")
        ]
        events = session.scalars(select(AuditEvent).where(AuditEvent.school_id == school)).all()
        enrolled = [e for e in events if e.action == "reference.enrolled"]
        assert enrolled and enrolled[0].detail == {
            "student_id": "ll-1",
            "reference_id": ref_id,
            "model": "dlib-resnet-v1",
        }
        assert "0.0078125" not in json.dumps([e.detail for e in events])  # EMBEDDING[1]


@pytest.mark.parametrize("bad", [[0.1] * 127, [0.1] * 129, [float("nan")] * 128])
def test_a_malformed_descriptor_is_refused(db_url, school, bad):
    with pytest.raises(InvalidInput) as err, session_scope(db_url) as session:
        references.enrol_reference(
            session=session,
            school_id=school,
            student_id="ll-1",
            embedding=bad,
            model="m",
            enrolled_by="x",
            source="api",
        )
    assert err.value.code == "invalid_embedding"


def test_erasing_references_deletes_them_and_is_scoped(db_url, school):
    other = make_school(db_url)
    first, second = enrol(db_url, school, "ll-1"), enrol(db_url, school, "ll-1")
    theirs = enrol(db_url, other, "ll-1")
    with session_scope(db_url) as session, pytest.raises(NotFound) as err:
        references.erase_references(
            session=session, school_id=school, student_id="ll-1", actor="t", reference_id=theirs
        )
    assert err.value.code == "unknown_reference"
    with session_scope(db_url) as session:
        assert references.erase_references(
            session=session, school_id=school, student_id="ll-1", actor="t", reference_id=first
        ) == [first]
    with session_scope(db_url) as session:
        assert references.erase_references(
            session=session, school_id=school, student_id="ll-1", actor="t"
        ) == [second]
        assert session.get(FaceReference, first) is None
        assert session.get(FaceReference, second) is None
        assert session.get(FaceReference, theirs) is not None  # the other school's stays


# --- the consent register ----------------------------------------------------------------


def _group_pk(url: str, school_id: str, group_id: str) -> int:
    from moderation.storage.roster import get_group

    with session_scope(url) as session:
        return get_group(session=session, school_id=school_id, group_id=group_id).pk


def test_consent_register_no_wins_silence_is_no_and_references_come_along(db_url, school):
    enrol(db_url, school, "ll-3")
    enrol(db_url, school, "ll-3", [0.5] * 128)
    group_5a = _group_pk(db_url, school, "groep-5a")
    with session_scope(db_url) as session:
        app = {
            c.student_id: c
            for c in references.consent_register(
                session=session, school_id=school, scope="app", group_pk=group_5a
            )
        }
        news = {
            c.student_id: c.consented
            for c in references.consent_register(
                session=session, school_id=school, scope="newsletter", group_pk=None
            )
        }
    assert {sid: c.consented for sid, c in app.items()} == {
        "ll-1": True,
        "ll-2": True,  # no, then yes: the latest answer counts
        "ll-3": False,  # yes, then no
        "ll-4": False,  # never answered
    }
    assert {sid: c.in_group for sid, c in app.items()} == {
        "ll-1": True,
        "ll-2": True,
        "ll-3": False,
        "ll-4": False,
    }
    assert len(app["ll-3"].references) == 2 and len(app["ll-3"].references[0]) == 128
    assert app["ll-3"].references[1] == pytest.approx([0.5] * 128)
    assert app["ll-1"].references == ()
    assert news == {"ll-1": False, "ll-2": False, "ll-3": False, "ll-4": False}


def test_consent_register_of_500_students_takes_two_queries(db_url):
    students = [{"id": f"k{i}", "name": f"Kind {i}", "group_id": "groep-5a"} for i in range(500)]
    parents = [{"id": f"o{i}", "name": f"Ouder {i}", "student_ids": [f"k{i}"]} for i in range(500)]
    consent = [
        {"student_id": f"k{i}", "parent_id": f"o{i}", "scope": "app", "granted": i % 3 != 0}
        for i in range(500)
    ]
    school_id = make_school(
        db_url,
        {
            "groups": [{"id": "groep-5a", "name": "5a"}],
            "students": students,
            "parents": parents,
            "consent": consent,
        },
    )
    for i in range(0, 500, 5):
        enrol(db_url, school_id, f"k{i}")
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = get_engine(db_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(db_url) as session:
            register = references.consent_register(
                session=session, school_id=school_id, scope="app", group_pk=None
            )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2
    assert len(register) == 500
    assert sum(c.consented for c in register) == 333
    assert sum(bool(c.references) for c in register) == 100


# --- erasure and withdrawal ---------------------------------------------------------------


def test_erasing_a_student_deletes_what_names_them_and_keeps_decisions(db_url, school):
    enrol(db_url, school, "ll-1")
    post_pk = decided_post(db_url, school, "p-erase", [photo_bytes("barack_obama/obama.jpg")])
    with session_scope(db_url) as session:
        student_pk = _student_pk(session, school)
        session.add(PostTaggedStudent(post_pk=post_pk, student_pk=student_pk))
    with session_scope(db_url) as session:
        report = takedowns.report_takedown(
            session=session,
            school_id=school,
            post_pk=post_pk,
            attachment_id="foto-0",
            student_id="ll-1",
            reason="consent_withdrawn",
        ).report
    with session_scope(db_url) as session:
        done = references.erase_student(
            session=session, school_id=school, student_id="ll-1", actor="api:privacy"
        )
    assert (done.consent_answers, done.references, done.tags, done.takedowns_unlinked) == (
        4,
        1,
        1,
        1,
    )

    def count(session, model, column, value) -> int:
        return session.scalar(select(func.count()).select_from(model).where(column == value))

    with session_scope(db_url) as session:
        assert session.get(Student, student_pk) is None
        assert count(session, ConsentAnswer, ConsentAnswer.student_pk, student_pk) == 0
        assert count(session, FaceReference, FaceReference.student_pk, student_pk) == 0
        assert count(session, PostTaggedStudent, PostTaggedStudent.student_pk, student_pk) == 0
        parent = session.scalar(
            select(Parent).where(Parent.school_id == school, Parent.external_id == "p-1")
        )
        assert parent is not None and parent.children == []
        kept = session.get(TakedownReport, report.id)
        assert kept is not None and kept.student_pk is None
        assert count(session, Decision, Decision.post_pk, post_pk) == 1
        erased = session.scalars(
            select(AuditEvent).where(
                AuditEvent.school_id == school, AuditEvent.action == "student.erased"
            )
        ).one()
        assert erased.detail["student_id"] == "ll-1"
        assert "Sanne" not in json.dumps(erased.detail)
        assert [
            t.student_id for t in takedowns.list_takedowns(session=session, school_id=school)
        ] == [None]
    with session_scope(db_url) as session, pytest.raises(NotFound):
        references.erase_student(session=session, school_id=school, student_id="ll-1", actor="t")


def _student_pk(session, school_id: str, student_id: str = "ll-1") -> int:
    return session.scalar(
        select(Student.pk).where(Student.school_id == school_id, Student.external_id == student_id)
    )


def test_apply_roster_reports_consent_going_from_yes_to_no(db_url, school):
    def answer(student: str, parent: str, granted: bool, scope: str = "app") -> dict[str, object]:
        return {"student_id": student, "parent_id": parent, "scope": scope, "granted": granted}

    def apply(*answers: dict[str, object]) -> list[tuple[str, str]]:
        with session_scope(db_url) as session:
            return apply_roster(
                session=session,
                school_id=school,
                roster=RosterIn(consent=list(answers)),
                source="api",
            ).withdrawn

    assert apply(answer("ll-1", "p-1", True)) == []  # yes again: no change
    assert apply(answer("ll-1", "p-2", False), answer("ll-1", "p-2", False, "website")) == [
        ("ll-1", "app")  # website was never granted: nothing withdrawn there
    ]
    assert apply(answer("ll-1", "p-2", False)) == []  # no already
    assert apply(answer("ll-2", "p-3", False), answer("ll-2", "p-3", True)) == []  # back to yes


# --- takedown reports --------------------------------------------------------------------


def test_takedown_is_reported_once_per_open_photo_and_child_with_a_callback(db_url, school):
    post_pk = decided_post(db_url, school, "p-td", [photo_bytes("barack_obama/obama.jpg")])

    def report(student: str = "ll-3") -> takedowns.TakedownOutcome:
        with session_scope(db_url) as session:
            return takedowns.report_takedown(
                session=session,
                school_id=school,
                post_pk=post_pk,
                attachment_id="foto-0",
                student_id=student,
                reason="consent_withdrawn",
            )

    first, again, other = report(), report(), report("ll-4")
    assert first.created and first.callback_pk is not None
    assert not again.created and again.callback_pk is None and again.report.id == first.report.id
    assert other.created and other.report.id != first.report.id
    with session_scope(db_url) as session:
        callback = session.get(Callback, first.callback_pk)
        assert callback is not None and callback.url == WEBHOOK
        assert callback.idempotency_key == f"{school}:p-td:takedown:{first.report.id}"
        assert callback.payload["type"] == "takedown"
        assert callback.payload["post_id"] == "p-td"
        assert callback.payload["attachment_id"] == "foto-0"
        assert callback.payload["student_id"] == "ll-3"
        assert callback.payload["reason"] == "consent_withdrawn"
        opened = takedowns.list_takedowns(session=session, school_id=school, status="open")
        assert [t.id for t in opened] == [first.report.id, other.report.id]
    with session_scope(db_url) as session:
        resolved = takedowns.resolve_takedown(
            session=session, school_id=school, report_id=first.report.id, by="platform"
        )
        assert (resolved.status, resolved.resolved_by) == ("resolved", "platform")
    with session_scope(db_url) as session, pytest.raises(Conflict) as err:
        takedowns.resolve_takedown(
            session=session, school_id=school, report_id=first.report.id, by="platform"
        )
    assert err.value.code == "already_resolved"
    assert report().created  # resolved: a later re-check may report it again


def test_takedowns_are_scoped_to_the_school(db_url, school):
    other = make_school(db_url)
    post_pk = decided_post(db_url, school, "p-scope", [plain_jpeg()])
    with session_scope(db_url) as session:
        report = takedowns.report_takedown(
            session=session,
            school_id=school,
            post_pk=post_pk,
            attachment_id="foto-0",
            student_id="ll-1",
            reason="reference_added",
        ).report
    with session_scope(db_url) as session:
        assert takedowns.list_takedowns(session=session, school_id=other) == []
        with pytest.raises(NotFound) as err:
            takedowns.resolve_takedown(
                session=session, school_id=other, report_id=report.id, by="x"
            )
        assert err.value.code == "unknown_takedown"
        with pytest.raises(NotFound):  # another school's post
            takedowns.report_takedown(
                session=session,
                school_id=other,
                post_pk=post_pk,
                attachment_id="foto-0",
                student_id="ll-1",
                reason="reference_added",
            )


# --- hash lists -------------------------------------------------------------------------


def _rows(url: str, school_id: str, list_name: str) -> list[ImageHash]:
    with session_scope(url) as session:
        return list(
            session.scalars(
                select(ImageHash)
                .where(ImageHash.school_id == school_id, ImageHash.list_name == list_name)
                .order_by(ImageHash.pk)
            )
        )


def test_a_released_post_remembers_its_hashes_once(db_url, school):
    decided_post(db_url, school, "p-rel", [photo_bytes("barack_obama/obama.jpg"), plain_jpeg()])
    rows = _rows(db_url, school, "released")
    assert len(rows) == 9  # the flat orange photo has no matchable hash and is skipped
    assert [r.variant for r in rows] == list(range(9)) and len({r.entry for r in rows}) == 1
    with session_scope(db_url) as session:
        post = get_post(session=session, school_id=school, post_id="p-rel")
        assert image_hashes.remember_released(session=session, post=post) == 0
    assert len(_rows(db_url, school, "released")) == 9


def test_held_posts_are_not_remembered_until_a_reviewer_releases_them(db_url, school):
    decided_post(db_url, school, "p-held", [photo_bytes("joe_biden/biden.jpg")], action=Action.HOLD)
    assert _rows(db_url, school, "released") == []
    with session_scope(db_url) as session:
        reviewer = reviewer_from_roster(session=session, school_id=school, staff_id="mw-1")
        review_post(
            session=session, reviewer=reviewer, action=ReviewAction.RELEASE, post_id="p-held"
        )
    rows = _rows(db_url, school, "released")
    assert len(rows) == 9 and rows[0].added_by == "admin:mw-1"


def test_removal_copies_the_released_hashes_and_needs_a_release(db_url, school):
    decided_post(db_url, school, "p-rm", [photo_bytes("barack_obama/obama2.jpg")])
    decided_post(
        db_url, school, "p-never", [photo_bytes("joe_biden/biden.jpg")], action=Action.REJECT
    )
    with session_scope(db_url) as session:
        post = get_post(session=session, school_id=school, post_id="p-rm")
        assert (
            image_hashes.mark_removed(session=session, post=post, reason="klacht", by="platform")
            == 9
        )
    with session_scope(db_url) as session:
        post = get_post(session=session, school_id=school, post_id="p-rm")
        assert image_hashes.mark_removed(session=session, post=post, reason="", by="platform") == 9
    removed = _rows(db_url, school, "removed")
    released = _rows(db_url, school, "released")
    assert [r.hash for r in removed] == [r.hash for r in released]
    assert removed[0].note == "klacht" and removed[0].added_by == "platform"
    with session_scope(db_url) as session, pytest.raises(Conflict) as err:
        post = get_post(session=session, school_id=school, post_id="p-never")
        image_hashes.mark_removed(session=session, post=post, reason="", by="platform")
    assert err.value.code == "post_not_released"


def test_block_list_entries_are_added_listed_and_deleted_as_one(db_url, school):
    hashes = [f"{i:016x}" for i in range(1, 10)]
    with session_scope(db_url) as session:
        entry = image_hashes.block_image(
            session=session, school_id=school, hashes=hashes, note="meme", added_by="mw-1"
        )
        only = image_hashes.block_image(
            session=session, school_id=school, hashes=["ABCDEF0123456789"], note=None, added_by="x"
        )
    assert entry.hashes == tuple(hashes) and only.phash == "abcdef0123456789"
    with session_scope(db_url) as session:
        listed = image_hashes.list_entries(session=session, school_id=school, list_name="blocked")
        assert [e.entry for e in listed] == [only.entry, entry.entry]
        before = image_hashes.generation(session=session, school_id=school)
        assert (
            image_hashes.delete_entry(
                session=session, school_id=school, list_name="blocked", entry=entry.entry, actor="t"
            )
            == 9
        )
    with session_scope(db_url) as session:
        assert image_hashes.generation(session=session, school_id=school) == before + 1
        assert [
            e.entry
            for e in image_hashes.list_entries(
                session=session, school_id=school, list_name="blocked"
            )
        ] == [only.entry]
        with pytest.raises(NotFound) as err:
            image_hashes.delete_entry(
                session=session, school_id=school, list_name="blocked", entry=entry.entry, actor="t"
            )
        assert err.value.code == "unknown_entry"


@pytest.mark.parametrize("bad", [[], ["0x12345678abcdef0"], ["123"], ["g" * 16], ["0" * 16] * 10])
def test_malformed_hashes_are_refused(db_url, school, bad):
    with pytest.raises(InvalidInput) as err, session_scope(db_url) as session:
        image_hashes.block_image(
            session=session, school_id=school, hashes=bad, note=None, added_by="x"
        )
    assert err.value.code == "invalid_hash"


def test_a_post_without_hashes_is_skipped(db_url, school):
    decided_post(db_url, school, "p-nohash", [photo_bytes("barack_obama/obama.jpg")], hashes=False)
    assert _rows(db_url, school, "released") == []


# --- migration 0004 ---------------------------------------------------------------------

NEW_TABLES = {"face_references", "image_hashes", "takedown_reports"}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database of its own, so going down does not disturb the other tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrate.sqlite'}"
        yield url
        dispose_engine(url)
        return
    name = f"moderation_migrate_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    yield url
    dispose_engine(url)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0004_goes_up_down_and_up_again(empty_db: str):
    upgrade(empty_db, "0003")
    engine = create_engine(empty_db)
    with engine.begin() as conn:  # a school from before the photo gate, as 0003 knew it
        conn.execute(
            text(
                "INSERT INTO schools (id, name, api_key_hash, webhook_secret, created_at, "
                "review_secret) VALUES ('old', 'Old', 'h', 's', CURRENT_TIMESTAMP, 'r')"
            )
        )
    engine.dispose()
    upgrade(empty_db)
    assert _tables(empty_db) >= NEW_TABLES
    with session_scope(empty_db) as session:
        school = session.get(School, "old")
        assert school is not None and school.hash_lists_generation == 0
        post = create_post(
            session=session,
            school_id="old",
            post_in=PostCreate(**post_body("p", channel={"type": "school", "id": "all"})),
            limits=LIMITS,
        ).post
        session.add(
            ImageHash(
                school_id="old",
                list_name="released",
                entry="e",
                hash="0" * 16,
                variant=0,
                post_pk=post.pk,
                added_by="t",
            )
        )
    downgrade(empty_db, "0003")
    assert not NEW_TABLES & _tables(empty_db)
    engine = create_engine(empty_db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM schools")).scalars().all() == ["old"]
    engine.dispose()
    upgrade(empty_db)
    assert _tables(empty_db) >= NEW_TABLES
