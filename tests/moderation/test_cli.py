"""The ``moderation`` CLI: create a school, import a roster from CSV exports, migrate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from moderation.cli import app
from moderation.config import get_settings
from moderation.roster_csv import read_roster
from moderation.storage.db import get_sessionmaker
from moderation.storage.migrate import downgrade, upgrade
from moderation.storage.roster import consent_history, current_consent, get_student
from moderation.storage.schools import school_for_key
from moderation.storage.tables import Staff, Student
from tests.conftest import Configure

PUPILS = """\ufeffleerlingnummer;roepnaam;tussenvoegsel;achternaam;groep;groepnaam
1001;Sanne;de;Vries;5a;Groep 5a
1002;Mohammed;;El Amrani;5a;Groep 5a
1003;Daan;;Jansen;6b;Groep 6b
"""
STAFF = """medewerkernummer;naam;functie;groepen
m1;Anouk Bakker;leerkracht;5a
m2;Jeroen Smit;directeur;
m3;Fatma Yilmaz;leerkracht;5a,6b
"""
CONSENT = """leerlingnummer;ouder_id;ouder_naam;app;nieuwsbrief;schoolgids;website;social_media
1001;o1;Eva de Vries;ja;ja;ja;nee;nee
1001;o2;Pieter de Vries;ja;nee;ja;;
1002;o3;Samira El Amrani;ja;ja;nee;nee;nee
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_create_school_then_import_roster(configure: Configure, tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["admin", "create-school", "--id", "marel", "--name", "De Marel"])
    assert result.exit_code == 0, result.output
    key = next(
        line.split(": ", 1)[1] for line in result.output.splitlines() if line.startswith("API key")
    )
    files = [
        write(tmp_path, "leerlingen.csv", PUPILS),
        write(tmp_path, "personeel.csv", STAFF),
        write(tmp_path, "toestemming.csv", CONSENT),
    ]
    result = runner.invoke(app, ["admin", "import-roster", "--school", "marel", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert "2 groups, 3 pupils, 3 staff, 3 parents, 13 consent answers" in result.output
    url = get_settings().database_url
    with get_sessionmaker(url)() as session:
        assert (
            school_for_key(session=session, api_key=key, pepper=get_settings().api_key_pepper).id
            == "marel"
        )
        names = session.scalars(select(Student.name).order_by(Student.external_id)).all()
        assert names == ["Sanne de Vries", "Mohammed El Amrani", "Daan Jansen"]
        fatma = session.scalars(select(Staff).where(Staff.external_id == "m3")).one()
        assert sorted(g.external_id for g in fatma.groups) == ["5a", "6b"]
        sanne = get_student(session=session, school_id="marel", student_id="1001")
        state = current_consent(consent_history(session=session, student=sanne))
        assert (state["app"], state["newsletter"], state["website"]) == (True, False, False)

    again = runner.invoke(app, ["admin", "create-school", "--id", "marel", "--name", "X"])
    assert again.exit_code == 2
    assert "exists already" in again.output


def test_bad_roster_file_imports_nothing(configure: Configure, tmp_path: Path):
    runner = CliRunner()
    assert runner.invoke(app, ["admin", "create-school", "--id", "s", "--name", "S"]).exit_code == 0
    bad = CONSENT.replace("1002;o3;Samira El Amrani;ja", "1002;o3;Samira El Amrani;misschien")
    files = [write(tmp_path, "l.csv", PUPILS), write(tmp_path, "t.csv", bad)]
    result = runner.invoke(app, ["admin", "import-roster", "--school", "s", *map(str, files)])
    assert result.exit_code == 2
    assert "misschien" in result.output and "nothing was imported" in result.output
    with get_sessionmaker(get_settings().database_url)() as session:
        assert session.scalar(select(func.count()).select_from(Student)) == 0


def test_unknown_school_and_unknown_file_kind(configure: Configure, tmp_path: Path):
    runner = CliRunner()
    runner.invoke(app, ["migrate"])
    result = runner.invoke(
        app, ["admin", "import-roster", "--school", "nope", str(write(tmp_path, "l.csv", PUPILS))]
    )
    assert result.exit_code == 2 and "nope" in result.output
    with pytest.raises(Exception, match="names no known roster file"):
        read_roster([("x.csv", "kolom1;kolom2\n1;2\n")])


def test_comma_separated_export_is_read_too():
    roster = read_roster([("l.csv", PUPILS.replace(";", ","))])
    assert [s.id for s in roster.students] == ["1001", "1002", "1003"]


def test_migrations_go_down_and_up_again(sqlite_url: str):
    downgrade(sqlite_url, "base")
    upgrade(sqlite_url)


PROPOSED = """categories:
  insult:
    - {hold_at: 0.3, reject_at: 0.5}
privacy_actions: {group: release}
"""


def test_policy_set_show_and_dry_run(configure: Configure, tmp_path: Path):
    configure(text_scorer="lexicon")
    runner = CliRunner()
    assert runner.invoke(app, ["admin", "create-school", "--id", "s", "--name", "S"]).exit_code == 0
    shown = runner.invoke(app, ["policy", "show", "--school", "s"])
    assert shown.exit_code == 0 and "policy version 0" in shown.output
    house = tmp_path / "house.yaml"
    house.write_text(shown.output, encoding="utf-8")
    assert runner.invoke(app, ["policy", "set", "--school", "s", str(house)]).exit_code == 0

    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        "\n".join(
            json.dumps(p)
            for p in [
                {"text": "Wat een kutjuf", "channel": "group", "author_role": "parent"},
                {"text": "Bel me op 06-12345678", "channel": "group"},
                {"text": "Fijne vakantie allemaal!", "channel": "group"},
            ]
        ),
        encoding="utf-8",
    )
    proposed = write(tmp_path, "proposed.yaml", PROPOSED)
    result = runner.invoke(
        app, ["policy", "test", "--school", "s", "--policy", str(proposed), str(posts), "--json"]
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["current"] == {"release": 1, "hold": 1, "reject": 1}
    assert counts["proposed"]["release"] == 2
    assert counts["changes"]["hold -> release"] == 1

    bad = write(tmp_path, "bad.yaml", "retention_days: -1\n")
    result = runner.invoke(app, ["policy", "set", "--school", "s", str(bad)])
    assert result.exit_code == 2 and "retention_days" in result.output
    shown = runner.invoke(app, ["policy", "show", "--school", "s"])
    assert "policy version 1" in shown.output
