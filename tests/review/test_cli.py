"""``moderation admin review-link`` and ``audit-export``; create-school's review secret."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moderation.api.main import create_app
from moderation.cli import app
from moderation.config import get_settings
from moderation.review.tokens import token_school, verify_review_token
from moderation.storage.audit import SCHOOL_TZ
from tests.conftest import Configure
from tests.review.conftest import add_school, review_secret, seed_post


def test_create_school_prints_the_review_secret(configure: Configure):
    result = CliRunner().invoke(app, ["admin", "create-school", "--id", "s", "--name", "S"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("review secret"))
    assert line.split(": ", 1)[1] == review_secret(get_settings().database_url, "s")


def test_review_link_signs_in(configure: Configure, sqlite_url: str):
    configure(database_url=sqlite_url, port="8123", review_cookie_secure="false")
    add_school(sqlite_url, "school-a")
    seed_post(sqlite_url, "school-a", "p1")
    result = CliRunner().invoke(
        app, ["admin", "review-link", "--school", "school-a", "--user", "mw-1"]
    )
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith("http://127.0.0.1:8123/review/login?token=")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert token_school(token) == "school-a"
    claims = verify_review_token(
        token, secret=review_secret(sqlite_url, "school-a"), max_ttl_s=900, leeway_s=0
    )
    assert (claims.sub, claims.role, claims.groups) == ("mw-1", "teacher", ("groep-5a",))
    with TestClient(create_app()) as client:
        r = client.get(urlsplit(link).path, params={"token": token})
        assert r.status_code == 200 and "<mark>kankerjuf</mark>" in r.text

    unknown = CliRunner().invoke(
        app, ["admin", "review-link", "--school", "school-a", "--user", "nobody"]
    )
    assert unknown.exit_code == 2 and "nobody" in unknown.output


def test_audit_export_to_a_file(configure: Configure, sqlite_url: str, tmp_path: Path):
    configure(database_url=sqlite_url)
    add_school(sqlite_url, "school-a")
    seed_post(sqlite_url, "school-a", "p1")
    today = datetime.now(SCHOOL_TZ).date().isoformat()  # a date means a Dutch day
    out = tmp_path / "audit.csv"
    args = ["admin", "audit-export", "--school", "school-a", "--from", today, "--to", today]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert [r["action"] for r in rows] == ["post.received", "decision.hold"]
    assert "wrote 2 audit events" in result.output
    stdout = CliRunner().invoke(app, args)
    assert stdout.exit_code == 0 and "decision.hold" in stdout.stdout
    bad = CliRunner().invoke(app, [*args[:-1], "yesterday"])
    assert bad.exit_code == 2
    unknown = CliRunner().invoke(
        app, ["admin", "audit-export", "--school", "nope", "--from", today, "--to", today]
    )
    assert unknown.exit_code == 2
