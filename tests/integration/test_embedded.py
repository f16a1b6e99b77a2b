"""The embedded default, as a new user runs it: ``moderation serve`` on SQLite with the
SQLite broker and its own worker, driven over real HTTP, with the real lexicon scorer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROSTER, post_body, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {
        **os.environ,
        "MODERATION_DATA_DIR": str(tmp_path / "var"),
        "MODERATION_ENVIRONMENT": "development",
    }
    env = {
        k: v
        for k, v in env.items()
        if k not in ("MODERATION_DATABASE_URL", "MODERATION_BROKER_URL")
    }
    cli = [sys.executable, "-m", "moderation.cli"]
    created = subprocess.run(
        [*cli, "admin", "create-school", "--id", "marel", "--name", "De Marel"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = next(
        line.split(": ", 1)[1] for line in created.stdout.splitlines() if line.startswith("API key")
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*cli, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout_s=60, what="the API to come up")
        # the worker loads the text model before it takes tasks, then says "ready."
        wait_until(
            lambda: b"ready." in (tmp_path / "serve.log").read_bytes(),
            timeout_s=180,
            what="the embedded worker",
        )
        yield base, key
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert (tmp_path / "var" / "moderation.sqlite").exists()
    assert (tmp_path / "var" / "broker.sqlite").exists()


def test_embedded_service_decides_posts_over_http(served: tuple[str, str]):
    base, key = served
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=15) as client:
        assert client.post("/v1/roster", json=ROSTER).status_code == 200
        friendly = client.post(
            "/v1/posts?wait=10",
            json=post_body("nl-1", "Wat een leuke foto's van de schoolreis, dank jullie wel!"),
        )
        assert friendly.status_code == 200, friendly.text
        assert friendly.json()["status"] == "released"

        text = "Wat ben jij een kankerjuf zeg"
        swearing = client.post(
            "/v1/posts?wait=10",
            json=post_body("nl-2", text, channel={"type": "kindgesprek", "id": "ll-1"}),
        ).json()
        assert swearing["status"] in ("held", "rejected")
        reason = swearing["decision"]["reasons"][0]
        assert reason["category"] == "insult"
        assert "schelden" in reason["message_nl"].lower()
        start, end = reason["spans"][0]
        assert "kanker" in text[start:end]

        bad = client.post(
            "/v1/posts", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "malformed_json")
        assert client.get("/v1/posts/nl-2").json()["status"] == swearing["status"]


def test_stopping_serve_stops_its_worker(tmp_path: Path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MODERATION_DATABASE_URL", "MODERATION_BROKER_URL")
    }
    env["MODERATION_DATA_DIR"] = str(tmp_path / "var")
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moderation.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: b"ready." in (tmp_path / "serve.log").read_bytes(),
            timeout_s=180,
            what="the embedded worker",
        )
        text = (tmp_path / "serve.log").read_text()
        worker_pid = int(text.split("worker started (pid ")[1].split(")")[0])
        proc.terminate()
        proc.wait(timeout=40)
    finally:
        log.close()
    wait_until(
        lambda: not Path(f"/proc/{worker_pid}").exists(),
        timeout_s=30,
        what="the worker to stop with serve",
    )
