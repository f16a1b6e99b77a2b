"""Fixtures that start or connect to real services: PostgreSQL, Redis, a worker process.

PostgreSQL (127.0.0.1:5432, trust auth) and Redis (6379) run on every developer and CI
machine (``.ci/run`` starts them if they are down). Each test session creates its own
PostgreSQL database and uses its own Redis database number, so runs don't collide.
A test that must stop or restart a server uses one of its own instead
(``private_redis``, ``private_postgres``; ``tests/private_services.py``): the shared
ones serve everybody's tests at the same time.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import psycopg
import pytest
import redis

from moderation.config import get_settings
from moderation.storage.db import dispose_engine, session_scope
from moderation.storage.migrate import upgrade
from moderation.storage.schools import create_school
from tests.private_services import PrivatePostgres, PrivateRedis

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_TEST_DB = 11


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"moderation_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    yield url
    dispose_engine(url)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'moderation.sqlite'}"
    upgrade(url)
    yield url
    dispose_engine(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a storage test on both databases the service supports."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis server of this test's own, which it may kill and restart
    (``tests/private_services.py``); the shared one on 6379 is never touched."""
    with PrivateRedis() as server:
        yield server


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, which it may crash and restart."""
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def private_pg_url(private_postgres: PrivatePostgres) -> Iterator[str]:
    """A migrated database on the test's own PostgreSQL server."""
    url = private_postgres.create_database("moderation")
    upgrade(url)
    yield url
    dispose_engine(url)


Configure = Callable[..., None]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Configure]:
    """``configure(database_url=..., text_scorer="fake")`` sets settings for this test,
    as ``MODERATION_*`` environment variables, so worker processes see them too."""

    def apply(**kwargs: str) -> None:
        for key, value in kwargs.items():
            monkeypatch.setenv(f"MODERATION_{key.upper()}", value)
        get_settings.cache_clear()

    apply(environment="test", data_dir=str(tmp_path / "var"), log_level="INFO")
    yield apply
    get_settings.cache_clear()


def new_school(url: str, school_id: str = "school-a", webhook_url: str | None = None) -> str:
    """Create a school directly in the database; returns its API key."""
    with session_scope(url) as session:
        return create_school(
            session=session,
            school_id=school_id,
            name=f"School {school_id}",
            pepper=get_settings().api_key_pepper,
            webhook_url=webhook_url,
        ).api_key


class WorkerProcess:
    """A real ``moderation worker`` process, started with the test's environment."""

    def __init__(self, log_path: Path, queues: str, beat: bool) -> None:
        self.log_path = log_path
        self.queues = queues
        self.beat = beat
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout_s: float = 180) -> WorkerProcess:
        cmd = [
            sys.executable,
            "-m",
            "moderation.cli",
            "worker",
            "--pool",
            "solo",
            "--queues",
            self.queues,
        ]
        if self.beat:
            cmd.append("--beat")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b"ready." in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()}")
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout_s}s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-task without any chance to clean up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[object]:
    """Call ``start_worker()`` to start a worker process; all are stopped at the end."""
    workers: list[WorkerProcess] = []

    def start(
        queues: str = "text,media,callbacks,maintenance", beat: bool = False
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(log, queues, beat)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
