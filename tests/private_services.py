"""Private Redis and PostgreSQL servers that a test may stop, kill and restart.

The machine's shared servers (PostgreSQL on 5432, Redis on 6379) are used by every
engineer's tests at the same time, so a fault-injection test never touches them: it
starts its own server on a free port, in a temporary folder, and restarts that one.

- :class:`PrivateRedis`: ``redis-server`` as a child process, keeping nothing on disk
  (``--save ''``), so a restart loses every queued message, as a crashed broker without
  persistence would.
- :class:`PrivatePostgres`: a cluster made by ``initdb`` and run by ``pg_ctl`` as the
  ``postgres`` user (the server refuses to run as root), listening on 127.0.0.1 and on a
  socket in its own folder. ``restart()`` stops it in ``immediate`` mode, a crash: the
  server recovers from its WAL on the next start, so nothing committed is lost.

Both are plain classes (``with`` blocks, or ``start``/``stop``) so that any test or
benchmark can use them; ``tests/conftest.py`` wraps them as the ``private_redis`` and
``private_postgres`` fixtures.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import psycopg

READY_TIMEOUT_S = 60.0  # a loaded 2-core machine can take a while to start PostgreSQL


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later), and
    one this test process never handed out before: a server's address is then never
    that of an earlier test's server, whose clients may still be cached in the process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout_s:.0f} s")


class PrivateRedis:
    """A ``redis-server`` of our own on a free port; ``restart()`` drops every key."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="private-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait(lambda: port_open(self.port), f"redis-server did not listen on {self.port}")
        return self

    def stop(self) -> None:
        """SIGKILL: the broker dies at once, with whatever it held in memory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them off the PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise FileNotFoundError("no PostgreSQL server programs under /usr/lib/postgresql")
    return Path(found[-1]).parent


class PrivatePostgres:
    """A PostgreSQL cluster of our own, in a temporary folder, on a free port.

    We run as root and PostgreSQL refuses root, so every server command runs as the
    ``postgres`` user through ``runuser``; the folder belongs to that user. Trust
    authentication on 127.0.0.1, like the machine's shared server.
    """

    USER = "postgres"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="private-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.sockets.mkdir()
        shutil.chown(self.root, user=self.USER)
        shutil.chown(self.sockets, user=self.USER)
        self._initialised = False

    def _as_postgres(self, *argv: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        cmd = ["runuser", "-u", self.USER, "--", *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed:\n{done.stdout}\n{done.stderr}")

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL, as ``MODERATION_DATABASE_URL`` takes it."""
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> PrivatePostgres:
        if not self._initialised:
            self._as_postgres(
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--auth",
                "trust",
                "--username",
                self.USER,
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            )
            self._initialised = True
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--options",
            options,
            "--wait",
            "--timeout",
            str(int(READY_TIMEOUT_S)),
            "start",
        )
        _wait(self.accepts_connections, f"PostgreSQL did not accept connections on {self.port}")
        return self

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.admin_dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        if not (self.data / "postmaster.pid").exists():
            return
        self._as_postgres(
            str(self.bin / "pg_ctl"), "--pgdata", str(self.data), "--mode", mode, "stop"
        )

    def restart(self, down_s: float = 0.0) -> None:
        """Crash the server (every connection drops mid-query), wait, start it again."""
        self.stop(mode="immediate")
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def can_run_private_postgres() -> bool:
    """True where the server programs and the ``postgres`` user exist (the CI machines)."""
    try:
        postgres_bin()
    except FileNotFoundError:
        return False
    return shutil.which("runuser") is not None and _user_exists(PrivatePostgres.USER)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return os.geteuid() == 0
