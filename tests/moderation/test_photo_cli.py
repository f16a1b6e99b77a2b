"""``moderation admin enrol / erase-references / erase-student / block-image``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from moderation.cli import app
from moderation.config import get_settings
from moderation.schemas import RosterIn
from moderation.storage.db import session_scope
from moderation.storage.roster import apply_roster
from moderation.storage.tables import ConsentAnswer, FaceReference, ImageHash, Student
from tests.conftest import Configure
from tests.helpers import ROSTER
from tests.moderation.photos import encode, photo_path, plain_jpeg, two_faces


@pytest.fixture
def school(configure: Configure, redis_url: str) -> str:
    configure(broker_url=redis_url)
    result = CliRunner().invoke(app, ["admin", "create-school", "--id", "marel", "--name", "M"])
    assert result.exit_code == 0, result.output
    with session_scope(get_settings().database_url) as session:
        apply_roster(session=session, school_id="marel", roster=RosterIn(**ROSTER), source="t")
    return "marel"


def references(student: str = "ll-1") -> list[FaceReference]:
    with session_scope(get_settings().database_url) as session:
        return list(
            session.scalars(
                select(FaceReference)
                .join(Student, Student.pk == FaceReference.student_pk)
                .where(Student.external_id == student)
            )
        )


def test_enrol_reports_each_photo_and_fails_when_one_is_refused(school: str, tmp_path: Path):
    runner = CliRunner()
    good = str(photo_path("barack_obama/obama.jpg"))
    result = runner.invoke(
        app, ["admin", "enrol", "--school", school, "--student", "ll-1", good, "--by", "mw-1"]
    )
    assert result.exit_code == 0, result.output
    assert "[1/1]" in result.output and "enrolled as reference" in result.output
    assert "enrolled 1 of 1 photos" in result.output
    [row] = references()
    assert (row.source, row.enrolled_by) == ("cli", "mw-1")

    group = tmp_path / "groep.jpg"
    group.write_bytes(encode(two_faces()))
    blank = tmp_path / "leeg.jpg"
    blank.write_bytes(plain_jpeg())
    missing = tmp_path / "weg.jpg"
    second = str(photo_path("barack_obama/obama2.jpg"))
    photos = [str(group), str(blank), str(missing), second]
    result = runner.invoke(
        app,
        ["admin", "enrol", "--school", school, "--student", "ll-1", *photos],
    )
    assert result.exit_code == 2
    assert "several_faces" in result.output and "no_face" in result.output
    assert "weg.jpg" in result.output
    assert "enrolled 1 of 4 photos" in result.output
    assert len(references()) == 2

    result = runner.invoke(app, ["admin", "enrol", "--school", school, "--student", "ll-9", good])
    assert result.exit_code == 2 and "ll-9" in result.output


def test_erase_references_and_student(school: str):
    runner = CliRunner()
    good = str(photo_path("joe_biden/biden.jpg"))
    for student in ("ll-1", "ll-2"):
        args = ["admin", "enrol", "--school", school, "--student", student, good]
        assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(
        app, ["admin", "erase-references", "--school", school, "--student", "ll-2"]
    )
    assert result.exit_code == 0 and "erased 1 references" in result.output
    assert references("ll-2") == [] and len(references("ll-1")) == 1

    result = runner.invoke(app, ["admin", "erase-student", "--school", school, "--student", "ll-1"])
    assert result.exit_code == 0, result.output
    assert "2 consent answers, 1 references" in result.output
    with session_scope(get_settings().database_url) as session:
        assert session.scalars(select(ConsentAnswer)).all() == []
        assert session.scalar(select(Student).where(Student.external_id == "ll-1")) is None
    result = runner.invoke(app, ["admin", "erase-student", "--school", school, "--student", "ll-1"])
    assert result.exit_code == 2 and "ll-1" in result.output


def test_block_image(school: str, tmp_path: Path):
    runner = CliRunner()
    path = str(photo_path("eileen_collins/astronaut.jpg"))
    result = runner.invoke(app, ["admin", "block-image", "--school", school, path, "--note", "x"])
    assert result.exit_code == 0, result.output
    assert "blocked" in result.output and "blk_" in result.output
    with session_scope(get_settings().database_url) as session:
        assert len(session.scalars(select(ImageHash)).all()) == 9
    blank = tmp_path / "leeg.jpg"
    blank.write_bytes(plain_jpeg())
    result = runner.invoke(app, ["admin", "block-image", "--school", school, str(blank)])
    assert result.exit_code == 2 and "image_not_matchable" in result.output
    text = tmp_path / "tekst.jpg"
    text.write_text("geen foto")
    result = runner.invoke(app, ["admin", "block-image", "--school", school, str(text)])
    assert result.exit_code == 2 and "nothing was blocked" in result.output
