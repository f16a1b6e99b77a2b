"""Groups, students, staff, parents and consent: created or updated from the platform's
sync API or a CSV import, both through :func:`apply_roster`.

Consent is a history: every answer is appended; the current state per scope is the
latest answer of each parent, and the child has consent only if every parent who
answered said yes and at least one did ("no" wins, no answer is no consent).
:func:`apply_roster` reports the (student, scope) pairs whose consent went from yes to
no (``RosterResult.withdrawn``), so the caller can queue a re-check of the school's
released photos after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.errors import InvalidInput, NotFound
from moderation.schemas import (
    ConsentIn,
    ConsentScope,
    GroupIn,
    ParentIn,
    RosterIn,
    RosterResult,
    StaffIn,
    StudentIn,
)
from moderation.storage.tables import ConsentAnswer, Group, Parent, Staff, Student

Row = TypeVar("Row", Group, Student, Staff, Parent)


def _find(session: Session, model: type[Row], school_id: str, external_id: str) -> Row | None:
    return session.scalars(
        select(model).where(model.school_id == school_id, model.external_id == external_id)
    ).first()


def _require(
    session: Session, model: type[Row], school_id: str, external_id: str, code: str
) -> Row:
    row = _find(session, model, school_id, external_id)
    if row is None:
        raise NotFound(f"{code.removeprefix('unknown_')} {external_id!r} is not known", code=code)
    return row


def get_group(*, session: Session, school_id: str, group_id: str) -> Group:
    return _require(session, Group, school_id, group_id, "unknown_group")


def get_student(*, session: Session, school_id: str, student_id: str) -> Student:
    return _require(session, Student, school_id, student_id, "unknown_student")


def student_names(*, session: Session, school_id: str) -> list[str]:
    """Every pupil's name in the school, for spotting personal details about a child."""
    return list(session.scalars(select(Student.name).where(Student.school_id == school_id)))


def find_students(*, session: Session, school_id: str, student_ids: Iterable[str]) -> list[Student]:
    """All the named students, or InvalidInput naming those that are not known."""
    wanted = list(dict.fromkeys(student_ids))
    if not wanted:
        return []
    rows = session.scalars(
        select(Student).where(Student.school_id == school_id, Student.external_id.in_(wanted))
    ).all()
    missing = sorted(set(wanted) - {s.external_id for s in rows})
    if missing:
        raise InvalidInput(
            f"unknown students: {', '.join(missing)}", code="unknown_student", missing=missing
        )
    return list(rows)


def upsert_group(*, session: Session, school_id: str, group_in: GroupIn) -> Group:
    group = _find(session, Group, school_id, group_in.id)
    if group is None:
        group = Group(school_id=school_id, external_id=group_in.id, name=group_in.name)
        session.add(group)
    group.name = group_in.name
    session.flush()
    return group


def upsert_student(*, session: Session, school_id: str, student_in: StudentIn) -> Student:
    group_pk = None
    if student_in.group_id is not None:
        group = _find(session, Group, school_id, student_in.group_id)
        if group is None:
            raise InvalidInput(f"group {student_in.group_id!r} is not known", code="unknown_group")
        group_pk = group.pk
    student = _find(session, Student, school_id, student_in.id)
    if student is None:
        student = Student(school_id=school_id, external_id=student_in.id, name=student_in.name)
        session.add(student)
    student.name = student_in.name
    student.group_pk = group_pk
    session.flush()
    return student


def _groups(session: Session, school_id: str, group_ids: list[str]) -> list[Group]:
    groups = []
    for gid in group_ids:
        group = _find(session, Group, school_id, gid)
        if group is None:
            raise InvalidInput(f"group {gid!r} is not known", code="unknown_group")
        groups.append(group)
    return groups


def upsert_staff(*, session: Session, school_id: str, staff_in: StaffIn) -> Staff:
    staff = _find(session, Staff, school_id, staff_in.id)
    if staff is None:
        staff = Staff(school_id=school_id, external_id=staff_in.id, name=staff_in.name)
        session.add(staff)
    staff.name = staff_in.name
    staff.role = staff_in.role.value
    staff.groups = _groups(session, school_id, staff_in.group_ids)
    session.flush()
    return staff


def upsert_parent(*, session: Session, school_id: str, parent_in: ParentIn) -> Parent:
    parent = _find(session, Parent, school_id, parent_in.id)
    if parent is None:
        parent = Parent(school_id=school_id, external_id=parent_in.id, name=parent_in.name)
        session.add(parent)
    parent.name = parent_in.name
    parent.children = find_students(
        session=session, school_id=school_id, student_ids=parent_in.student_ids
    )
    session.flush()
    return parent


def record_consent(
    *, session: Session, school_id: str, consent_in: ConsentIn, source: str
) -> ConsentAnswer:
    student = get_student(session=session, school_id=school_id, student_id=consent_in.student_id)
    parent = _find(session, Parent, school_id, consent_in.parent_id)
    if parent is None:
        raise InvalidInput(f"parent {consent_in.parent_id!r} is not known", code="unknown_parent")
    if student not in parent.children:
        raise InvalidInput(
            f"parent {parent.external_id!r} is not a parent of {student.external_id!r}",
            code="not_a_parent_of_student",
        )
    answer = ConsentAnswer(
        school_id=school_id,
        student_pk=student.pk,
        parent_pk=parent.pk,
        scope=consent_in.scope.value,
        granted=consent_in.granted,
        source=source,
    )
    session.add(answer)
    session.flush()
    return answer


def consent_history(*, session: Session, student: Student) -> list[tuple[str, ConsentAnswer]]:
    """Every answer for the child, oldest first, with the answering parent's id."""
    rows = session.execute(
        select(Parent.external_id, ConsentAnswer)
        .join(Parent, Parent.pk == ConsentAnswer.parent_pk)
        .where(ConsentAnswer.student_pk == student.pk)
        .order_by(ConsentAnswer.recorded_at, ConsentAnswer.pk)
    ).all()
    return [(pid, answer) for pid, answer in rows]


def current_consent(history: list[tuple[str, ConsentAnswer]]) -> dict[ConsentScope, bool]:
    """Per scope: True only if some parent answered and every parent's latest is yes."""
    latest: dict[tuple[str, str], bool] = {}
    for parent_id, answer in history:  # oldest first, so later answers overwrite
        latest[(parent_id, answer.scope)] = answer.granted
    state: dict[ConsentScope, bool] = {}
    for scope in ConsentScope:
        answers = [granted for (_, s), granted in latest.items() if s == scope.value]
        state[scope] = bool(answers) and all(answers)
    return state


def apply_roster(
    *, session: Session, school_id: str, roster: RosterIn, source: str
) -> RosterResult:
    """Create or update everything in the roster, in dependency order, in one transaction."""
    for group_in in roster.groups:
        upsert_group(session=session, school_id=school_id, group_in=group_in)
    for student_in in roster.students:
        upsert_student(session=session, school_id=school_id, student_in=student_in)
    for staff_in in roster.staff:
        upsert_staff(session=session, school_id=school_id, staff_in=staff_in)
    for parent_in in roster.parents:
        upsert_parent(session=session, school_id=school_id, parent_in=parent_in)
    pairs = {(c.student_id, c.scope.value) for c in roster.consent}
    before = _consent_states(session, school_id, pairs)
    for consent_in in roster.consent:
        record_consent(session=session, school_id=school_id, consent_in=consent_in, source=source)
    after = _consent_states(session, school_id, pairs)
    return RosterResult(
        groups=len(roster.groups),
        students=len(roster.students),
        staff=len(roster.staff),
        parents=len(roster.parents),
        consent=len(roster.consent),
        withdrawn=sorted(pair for pair in pairs if before.get(pair) and not after.get(pair)),
    )


def _consent_states(
    session: Session, school_id: str, pairs: set[tuple[str, str]]
) -> dict[tuple[str, str], bool]:
    """Current consent of these (student id, scope) pairs, in one query ("no" wins)."""
    if not pairs:
        return {}
    rows = session.execute(
        select(
            Student.external_id, ConsentAnswer.parent_pk, ConsentAnswer.scope, ConsentAnswer.granted
        )
        .join(Student, Student.pk == ConsentAnswer.student_pk)
        .where(
            Student.school_id == school_id,
            Student.external_id.in_({student_id for student_id, _ in pairs}),
        )
        .order_by(ConsentAnswer.recorded_at, ConsentAnswer.pk)
    )
    latest: dict[tuple[str, str, int], bool] = {}
    for student_id, parent_pk, scope, granted in rows:  # oldest first: later ones overwrite
        latest[(student_id, scope, parent_pk)] = granted
    answers: dict[tuple[str, str], list[bool]] = {}
    for (student_id, scope, _), granted in latest.items():
        answers.setdefault((student_id, scope), []).append(granted)
    return {pair: bool(answers.get(pair)) and all(answers[pair]) for pair in pairs}
