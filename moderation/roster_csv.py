"""Reading roster exports from a Dutch school administration system into a roster.

Three kinds of file, told apart by their header row (semicolon- or comma-separated,
UTF-8 with or without BOM, header names case-insensitive); see ``docs/roster-import.md``:

- pupils (``leerlingnummer;roepnaam;tussenvoegsel;achternaam;groep;groepnaam``)
- staff (``medewerkernummer;naam;functie;groepen``; ``groepen`` separated by ``,``)
- parents and consent (``leerlingnummer;ouder_id;ouder_naam;app;nieuwsbrief;schoolgids;
  website;social_media``, each scope ``ja``/``nee``, empty for no answer)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from moderation.errors import InvalidInput
from moderation.schemas import (
    ConsentIn,
    ConsentScope,
    GroupIn,
    ParentIn,
    RosterIn,
    StaffIn,
    StaffRole,
    StudentIn,
)

SCOPE_COLUMNS = {
    "app": ConsentScope.APP,
    "nieuwsbrief": ConsentScope.NEWSLETTER,
    "schoolgids": ConsentScope.SCHOOL_GUIDE,
    "website": ConsentScope.WEBSITE,
    "social_media": ConsentScope.SOCIAL_MEDIA,
}
YES = {"ja", "j", "yes", "y", "1", "true", "akkoord"}
NO = {"nee", "n", "no", "0", "false", "geen toestemming"}
ROLES = {
    "leerkracht": StaffRole.TEACHER,
    "groepsleerkracht": StaffRole.TEACHER,
    "teacher": StaffRole.TEACHER,
    "directeur": StaffRole.ADMIN,
    "directie": StaffRole.ADMIN,
    "admin": StaffRole.ADMIN,
    "administratie": StaffRole.ADMIN,
}


def _rows(text: str, name: str) -> tuple[list[str], list[dict[str, str]]]:
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if not reader.fieldnames:
        raise InvalidInput(f"{name}: the file is empty", code="empty_roster_file")
    header = [h.strip().lower() for h in reader.fieldnames]
    rows = [
        {h: (v or "").strip() for h, v in zip(header, raw.values(), strict=False)} for raw in reader
    ]
    return header, rows


def _full_name(row: dict[str, str]) -> str:
    parts = (row.get("roepnaam", ""), row.get("tussenvoegsel", ""), row.get("achternaam", ""))
    return " ".join(p for p in parts if p)


def _answer(value: str, where: str) -> bool | None:
    v = value.lower()
    if not v:
        return None
    if v in YES:
        return True
    if v in NO:
        return False
    raise InvalidInput(f"{where}: {value!r} is not ja or nee", code="invalid_consent_value")


def _read_pupils(rows: list[dict[str, str]], roster: RosterIn) -> None:
    groups = {g.id for g in roster.groups}
    for row in rows:
        group_id = row.get("groep") or None
        if group_id and group_id not in groups:
            roster.groups.append(GroupIn(id=group_id, name=row.get("groepnaam") or group_id))
            groups.add(group_id)
        roster.students.append(
            StudentIn(id=row["leerlingnummer"], name=_full_name(row), group_id=group_id)
        )


def _read_staff(rows: list[dict[str, str]], roster: RosterIn) -> None:
    for row in rows:
        role = ROLES.get(row.get("functie", "").lower(), StaffRole.STAFF)
        groups = [g.strip() for g in row.get("groepen", "").replace("|", ",").split(",")]
        roster.staff.append(
            StaffIn(
                id=row["medewerkernummer"],
                name=row["naam"],
                role=role,
                group_ids=[g for g in groups if g],
            )
        )


def _read_consent(rows: list[dict[str, str]], roster: RosterIn, name: str) -> None:
    parents: dict[str, ParentIn] = {p.id: p for p in roster.parents}
    for line, row in enumerate(rows, start=2):
        pid, sid = row["ouder_id"], row["leerlingnummer"]
        parent = parents.get(pid)
        if parent is None:
            parent = ParentIn(id=pid, name=row.get("ouder_naam") or pid)
            parents[pid] = parent
            roster.parents.append(parent)
        if sid not in parent.student_ids:
            parent.student_ids.append(sid)
        for column, scope in SCOPE_COLUMNS.items():
            granted = _answer(row.get(column, ""), f"{name} line {line}, {column}")
            if granted is not None:
                roster.consent.append(
                    ConsentIn(student_id=sid, parent_id=pid, scope=scope, granted=granted)
                )


def read_roster(files: Iterable[tuple[str, str]]) -> RosterIn:
    """Merge ``(name, text)`` files of any of the three kinds into one roster."""
    roster = RosterIn()
    for name, text in files:
        header, rows = _rows(text, name)
        if "medewerkernummer" in header:
            _read_staff(rows, roster)
        elif "ouder_id" in header:
            _read_consent(rows, roster, name)
        elif "leerlingnummer" in header:
            _read_pupils(rows, roster)
        else:
            raise InvalidInput(
                f"{name}: header {header} names no known roster file "
                "(pupils need 'leerlingnummer', staff 'medewerkernummer', consent 'ouder_id')",
                code="unknown_roster_file",
            )
    return roster


def read_roster_files(paths: Iterable[Path]) -> RosterIn:
    return read_roster((p.name, p.read_text(encoding="utf-8-sig")) for p in paths)
