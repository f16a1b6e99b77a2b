"""``moderation bench e2e``: the whole service under a fixed load, measured end to end.

Why: the platform trusts us with every post of every school, so we show with numbers
what the real processes sustain on a given machine, and that nothing is lost or
duplicated on the way. The benchmark starts what production runs — the API (``serve``,
uvicorn, in a subprocess) and N ``moderation worker`` processes — against PostgreSQL and
Redis (or the embedded SQLite pair), creates a school and a roster, and submits posts
at a fixed rate (open loop: a slow service does not slow the sender down) in a realistic
mix (``moderation.bench_material``). Then it waits for the queue to drain and reads the
truth from the database:

- **latency**: ``decisions.created_at`` minus the post's ``created_at`` (submit →
  decision stored), by post kind; not by polling the API, which would add its own delay;
- **lost**: accepted posts (202/200) without a decision after the drain timeout;
- **duplicated**: posts with more than one automatic decision, plus decision callbacks
  delivered more than once under one idempotency key (a small receiver in this process
  plays the platform);
- **CPU per post** of the API and of the workers (from ``/proc``), which is what a
  busy machine distorts least: it says where the time goes.

``--profile`` attaches py-spy to the API and each worker for the measured window and
leaves their collapsed stacks beside the report (``profile-*.txt``: flamegraph.pl
and speedscope read them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx

from moderation.bench_material import ROSTER, Material, Mix, PostTemplate
from moderation.signing import IDEMPOTENCY_HEADER

Progress = Callable[[str], None]

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # the machine's server
BENCH_REDIS_URL = "redis://127.0.0.1:6379/14"  # a database number of the bench's own
READY_TIMEOUT_S = 300.0  # a worker loads the text model before it says "ready."
PROGRESS_EVERY_S = 5.0
HTTP_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 200  # concurrent submissions the generator allows itself


@dataclass(frozen=True)
class BenchOptions:
    rate: float = 50.0  # posts submitted per second
    seconds: float = 30.0  # how long posts are submitted
    workers: int = 1  # worker processes, each taking every queue
    pool: str = "threads"  # threads: concurrent text tasks share the model's passes
    concurrency: int = 8  # tasks at once per worker process
    mix: Mix = "realistic"
    text_scorer: str = "model"
    embedded: bool = False  # SQLite + the SQLite broker instead of PostgreSQL + Redis
    database_url: str | None = None  # None: a fresh database, created and dropped here
    broker_url: str | None = None  # None: BENCH_REDIS_URL, flushed before and after
    drain_timeout_s: float = 120.0  # after the last submission
    warmup_posts: int = 10  # sent and decided before the measured window
    out_dir: Path = Path("var/bench")
    log_level: str = "INFO"  # the services' own, as in production
    profile: bool = False  # py-spy stacks of the API and the workers

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.seconds <= 0 or self.workers < 1 or self.concurrency < 1:
            raise ValueError("rate and seconds must be positive, workers and concurrency >= 1")
        if self.pool not in ("solo", "threads", "prefork"):
            raise ValueError(f"unknown pool {self.pool!r}; choose solo, threads or prefork")
        if self.embedded and (self.database_url or self.broker_url):
            raise ValueError("--embedded uses its own SQLite files; drop the URLs")


@dataclass
class Submission:
    template: PostTemplate
    sent_at: float = 0.0  # monotonic
    answered_at: float = 0.0
    status: int = 0  # HTTP status; 0: no answer


# --- the platform's side: a callback receiver -------------------------------------------


class CallbackReceiver:
    """A local HTTP server standing in for the platform's webhook: counts deliveries per
    idempotency key and answers 204."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a platform's load balancer

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.deliveries[self.headers.get(IDEMPOTENCY_HEADER, "")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the service's processes ------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL server processes serving connections to ``database`` on this machine
    (their command line names it), so the database's own CPU per post can be counted."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("postgres:") and f" {database} " in cmdline:
            pids.append(int(proc.name))
    return pids


class ServiceProcess:
    """One ``moderation`` subprocess (the API or a worker), its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moderation.cli", *argv],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_for(self, ready: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _child_env(
    options: BenchOptions, database_url: str, broker_url: str, data_dir: Path
) -> dict[str, str]:
    from moderation.config import get_settings

    env = dict(os.environ)  # other MODERATION_* settings apply as set (e.g. MEDIA_SCORER)
    settings = get_settings()
    env.update(
        {
            "MODERATION_DATABASE_URL": database_url,
            "MODERATION_BROKER_URL": broker_url,
            "MODERATION_DATA_DIR": str(data_dir),
            "MODERATION_TEXT_SCORER": options.text_scorer,
            "MODERATION_LOG_LEVEL": options.log_level,
            "MODERATION_ENVIRONMENT": settings.environment,
            "MODERATION_API_KEY_PEPPER": settings.api_key_pepper,
            "MODERATION_RATE_LIMIT": "1000000/minute",  # the bench is one very busy key
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# --- the backends -----------------------------------------------------------------------


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    import psycopg

    name = f"moderation_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        from moderation.storage.db import dispose_engine

        dispose_engine(url)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_broker(broker_url: str, *, flush: bool) -> None:
    """Flush the bench's own Redis database, or purge our queues on a given broker."""
    if flush:
        import redis

        client = redis.Redis.from_url(broker_url)
        client.flushdb()
        client.close()
        return
    from kombu.connection import Connection

    from moderation.queue import ALL_QUEUES

    with Connection(broker_url) as conn:  # type: ignore[no-untyped-call]
        for queue in ALL_QUEUES:
            try:
                conn.channel().queue_purge(queue)
            except Exception:  # the queue does not exist yet
                continue


@contextmanager
def backends(options: BenchOptions, workdir: Path) -> Iterator[tuple[str, str]]:
    """The database and broker URLs for this run; what the bench made, it removes."""
    if options.embedded:
        yield (
            f"sqlite:///{(workdir / 'moderation.sqlite').as_posix()}",
            f"sqla+sqlite:///{(workdir / 'broker.sqlite').as_posix()}",
        )
        return
    broker = options.broker_url or BENCH_REDIS_URL
    own_broker = options.broker_url is None
    with ExitStack() as stack:
        database = options.database_url or stack.enter_context(_fresh_postgres_database())
        _empty_broker(broker, flush=own_broker)
        try:
            yield database, broker
        finally:
            if own_broker:
                _empty_broker(broker, flush=True)


def _create_school(database_url: str, webhook_url: str) -> tuple[str, str]:
    from moderation.config import get_settings
    from moderation.storage.db import session_scope
    from moderation.storage.schools import create_school

    school_id = f"bench-{secrets.token_hex(3)}"
    with session_scope(database_url) as session:
        new = create_school(
            session=session,
            school_id=school_id,
            name="Benchmarkschool De Marel",
            pepper=get_settings().api_key_pepper,
            webhook_url=webhook_url,
        )
        return school_id, new.api_key


# --- the load ---------------------------------------------------------------------------


async def _submit(client: httpx.AsyncClient, sub: Submission, post_id: str) -> None:
    sub.sent_at = time.monotonic()
    try:
        response = await client.post(
            "/v1/posts",
            content=sub.template.body(post_id),
            headers={"Content-Type": "application/json"},
        )
        sub.status = response.status_code
    except httpx.HTTPError:
        sub.status = 0
    sub.answered_at = time.monotonic()


async def drive(
    base_url: str,
    api_key: str,
    templates: Iterator[PostTemplate],
    *,
    rate: float,
    seconds: float,
    prefix: str,
    on_tick: Callable[[float, dict[str, Submission]], None] | None = None,
) -> dict[str, Submission]:
    """Submit ``rate * seconds`` posts on a fixed schedule (open loop) and return what
    each got back, by post id."""
    subs: dict[str, Submission] = {}
    total = round(rate * seconds)
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
    )
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=HTTP_TIMEOUT_S, limits=limits
    ) as client:
        tasks = []
        start = time.monotonic()
        next_tick = start + PROGRESS_EVERY_S
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            post_id = f"{prefix}-{i}"
            subs[post_id] = Submission(next(templates))
            tasks.append(asyncio.create_task(_submit(client, subs[post_id], post_id)))
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick += PROGRESS_EVERY_S
                on_tick(time.monotonic() - start, subs)
        await asyncio.gather(*tasks)
    return subs


# --- the truth, from the database -------------------------------------------------------


@dataclass
class PostOutcome:
    post_id: str
    status: str
    created_at: datetime
    auto_decisions: int = 0
    decided_at: datetime | None = None


def read_outcomes(database_url: str, school_id: str) -> dict[str, PostOutcome]:
    """Every post of the school with its automatic decisions, as stored."""
    from sqlalchemy import select

    from moderation.storage.db import get_sessionmaker
    from moderation.storage.posts import as_utc
    from moderation.storage.tables import Decision, Post

    with get_sessionmaker(database_url)() as session:
        rows = session.execute(
            select(Post.external_id, Post.status, Post.created_at, Decision.created_at)
            .outerjoin(Decision, (Decision.post_pk == Post.pk) & (Decision.decided_by == "auto"))
            .where(Post.school_id == school_id)
        ).all()
    outcomes: dict[str, PostOutcome] = {}
    for post_id, status, created, decided in rows:
        out = outcomes.setdefault(post_id, PostOutcome(post_id, status, as_utc(created)))
        if decided is not None:
            out.auto_decisions += 1
            decided = as_utc(decided)
            out.decided_at = decided if out.decided_at is None else min(out.decided_at, decided)
    return outcomes


def decided_count(database_url: str, school_id: str) -> int:
    from sqlalchemy import func, select

    from moderation.storage.db import get_sessionmaker
    from moderation.storage.tables import Post

    with get_sessionmaker(database_url)() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Post)
                .where(Post.school_id == school_id, Post.status != "pending")
            )
            or 0
        )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0 to 100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _ms(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "p99_ms": round(percentile(values, 99), 1),
    }


@dataclass
class BenchResult:
    summary: dict[str, Any]
    # (seconds since the first post was stored, latency ms, kind): where in the run it lagged
    timeline: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def latencies_ms(self) -> dict[str, list[float]]:
        """Each post's latency, by post kind."""
        by_kind: dict[str, list[float]] = {}
        for _, ms, kind in self.timeline:
            by_kind.setdefault(kind, []).append(ms)
        return by_kind


def measure(
    subs: dict[str, Submission],
    outcomes: dict[str, PostOutcome],
    deliveries: Counter[str],
    *,
    school_id: str,
    window_s: float,
) -> BenchResult:
    """The summary of one measured window: throughput, latency, losses, duplicates."""
    accepted = {pid: s for pid, s in subs.items() if s.status in (200, 202)}
    latencies: dict[str, list[float]] = {}
    stamped: list[tuple[datetime, float, str]] = []
    lost = duplicated_decisions = 0
    statuses: Counter[str] = Counter()
    first_created = last_decided = None
    for pid, sub in accepted.items():
        out = outcomes.get(pid)
        if out is None or out.decided_at is None:
            lost += 1
            continue
        duplicated_decisions += out.auto_decisions > 1
        statuses[out.status] += 1
        ms = (out.decided_at - out.created_at).total_seconds() * 1000
        latencies.setdefault(sub.template.kind, []).append(ms)
        stamped.append((out.created_at, ms, sub.template.kind))
        first_created = min(first_created or out.created_at, out.created_at)
        last_decided = max(last_decided or out.decided_at, out.decided_at)
    decided = sum(len(v) for v in latencies.values())
    keys = {f"{school_id}:{pid}:decision:1" for pid in accepted}
    duplicated_callbacks = sum(1 for k, n in deliveries.items() if k in keys and n > 1)
    missing_callbacks = sum(
        1
        for pid in accepted
        if f"{school_id}:{pid}:decision:1" not in deliveries
        and outcomes.get(pid)
        and outcomes[pid].decided_at
    )
    everything = [ms for values in latencies.values() for ms in values]
    timeline = sorted(
        ((created - first_created).total_seconds(), ms, kind)
        for created, ms, kind in stamped
        if first_created is not None
    )
    submit_ms = [(s.answered_at - s.sent_at) * 1000 for s in accepted.values()]
    span_s = (
        (last_decided - first_created).total_seconds() if first_created and last_decided else 0.0
    )
    summary: dict[str, Any] = {
        "posts_per_s": round(len(accepted) / window_s, 1) if window_s else 0.0,
        **{k: v for k, v in _ms(everything).items() if k != "n"},
        "lost": lost,
        "duplicated": duplicated_decisions + duplicated_callbacks,
        "submitted": len(subs),
        "accepted": len(accepted),
        "refused": len(subs) - len(accepted),
        "refusals": dict(
            Counter(str(s.status) for s in subs.values() if s.status not in (200, 202))
        ),
        "decided": decided,
        "decided_per_s": round(decided / span_s, 1) if span_s else 0.0,
        "max_ms": round(max(everything), 1) if everything else 0.0,
        "by_kind": {kind: _ms(values) for kind, values in sorted(latencies.items())},
        "submit_p50_ms": round(percentile(submit_ms, 50), 1),
        "submit_p95_ms": round(percentile(submit_ms, 95), 1),
        "statuses": dict(statuses),
        "callbacks": {
            "delivered": sum(1 for k in keys if k in deliveries),
            "missing": missing_callbacks,
            "duplicated": duplicated_callbacks,
        },
        "duplicated_decisions": duplicated_decisions,
    }
    return BenchResult(summary, timeline)


def plot_histogram(result: BenchResult, path: Path, title: str) -> Path | None:
    """A latency histogram by post kind with the percentiles marked, and beside it each
    post's latency over the run, which shows whether a tail is steady or a stall (needs
    matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax, over_time) = plt.subplots(1, 2, figsize=(15, 5), width_ratios=(3, 2))
    everything = [ms for values in result.latencies_ms.values() for ms in values]
    if everything:
        top = percentile(everything, 99.5) * 1.1 or 1.0
        bins = [top * i / 60 for i in range(61)]
        for kind, values in sorted(result.latencies_ms.items()):
            ax.hist(
                [min(v, top) for v in values], bins=bins, alpha=0.6, label=f"{kind} ({len(values)})"
            )
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            x = percentile(everything, q)
            ax.axvline(x, color="black", linestyle=style, linewidth=1, label=f"p{q} {x:.0f} ms")
    ax.set_xlabel("submit → decision stored (ms)")
    ax.set_ylabel("posts")
    ax.set_title(title)
    ax.legend()
    for kind in sorted({k for _, _, k in result.timeline}):
        points = [(t, ms) for t, ms, k in result.timeline if k == kind]
        over_time.scatter([t for t, _ in points], [ms for _, ms in points], s=4, label=kind)
    over_time.set_xlabel("seconds into the run (post stored)")
    over_time.set_ylabel("submit → decision stored (ms)")
    over_time.set_title("latency over the run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- the run ----------------------------------------------------------------------------


def _profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds) + 1),
            "--rate",
            "50",
            "--nonblocking",
            "--format",
            "raw",  # collapsed stacks: flamegraph.pl and speedscope read them
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass
class Service:
    """The running API and workers of one benchmark run."""

    base_url: str
    api: ServiceProcess
    workers: list[ServiceProcess]

    @property
    def pids(self) -> dict[str, list[int]]:
        return {"api": [self.api.pid], "workers": [w.pid for w in self.workers]}

    def cpu(self, database: str | None = None) -> dict[str, dict[int, float]]:
        """CPU seconds so far per process, by role; ``postgres``: the server processes
        serving ``database`` (connections come and go, so counted per process)."""
        pids = self.pids
        if database:
            pids["postgres"] = postgres_backends(database)
        return {role: {p: cpu_seconds(p) for p in ps} for role, ps in pids.items()}


def cpu_ms_per_post(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], posts: int
) -> dict[str, float]:
    """Milliseconds of CPU per post by role, from two ``Service.cpu`` readings."""
    return {
        role: round(
            sum(s - before.get(role, {}).get(pid, 0.0) for pid, s in procs.items())
            * 1000
            / max(posts, 1),
            1,
        )
        for role, procs in after.items()
    }


def start_service(
    options: BenchOptions, env: dict[str, str], workdir: Path, stack: ExitStack
) -> Service:
    """The API and ``options.workers`` workers, each stopped when ``stack`` closes;
    returns once the API answers and every worker has loaded its models."""
    port = _free_port()
    serve = ["serve", "--no-embedded-worker", "--no-migrate", "--host", "127.0.0.1"]
    api = ServiceProcess("api", [*serve, "--port", str(port)], env, workdir / "api.log")
    stack.callback(api.stop)
    workers = []
    for i in range(options.workers):
        argv = ["worker", "--pool", options.pool, "--concurrency", str(options.concurrency)]
        argv += ["--beat"] if i == 0 else []  # one sweeper schedule
        worker = ServiceProcess(f"worker-{i}", argv, env, workdir / f"worker-{i}.log")
        stack.callback(worker.stop)
        workers.append(worker)
    base_url = f"http://127.0.0.1:{port}"
    api.wait_for(lambda: _healthy(base_url), timeout_s=60)
    for worker in workers:
        log_path = worker.log_path
        worker.wait_for(lambda path=log_path: b"ready." in path.read_bytes())  # type: ignore[misc]
    return Service(base_url, api, workers)


def run_bench(options: BenchOptions, progress: Progress = lambda _: None) -> BenchResult:
    """Start the service, load it, drain it, measure it, stop it; see the module doc."""
    from moderation.storage.migrate import upgrade

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    workdir = options.out_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True)
    with ExitStack() as stack:
        database_url, broker_url = stack.enter_context(backends(options, workdir))
        upgrade(database_url)
        receiver = CallbackReceiver()
        stack.callback(receiver.close)
        school_id, api_key = _create_school(database_url, receiver.url)
        env = _child_env(options, database_url, broker_url, workdir)
        progress(f"starting the API and {options.workers} worker(s) ({options.text_scorer})")
        service = start_service(options, env, workdir, stack)
        headers = {"Authorization": f"Bearer {api_key}"}
        httpx.post(f"{service.base_url}/v1/roster", json=ROSTER, headers=headers).raise_for_status()
        progress(f"building the {options.mix} mix (texts, phone-sized photos)")
        material = Material(options.mix)
        templates = material.stream()
        if options.warmup_posts:  # connection pools, lazy imports, first passes: not measured
            warm_rate = min(options.rate, 10)
            warm = asyncio.run(
                drive(
                    service.base_url,
                    api_key,
                    templates,
                    rate=warm_rate,
                    seconds=options.warmup_posts / warm_rate,
                    prefix="warmup",
                )
            )
            _wait_decided(database_url, school_id, len(warm), timeout_s=options.drain_timeout_s)
        already = decided_count(database_url, school_id)

        def tick(elapsed: float, subs: dict[str, Submission]) -> None:
            answered = [s for s in subs.values() if s.answered_at]
            ok = sum(1 for s in answered if s.status in (200, 202))
            progress(
                f"{elapsed:5.0f} s  sent {len(subs)}  accepted {ok}  refused {len(answered) - ok}  "
                f"decided {decided_count(database_url, school_id) - already}"
            )

        progress(f"submitting {options.rate:g} posts/s for {options.seconds:g} s")
        database = None if options.embedded else database_url.rsplit("/", 1)[-1].split("?")[0]
        cpu_before = service.cpu(database)
        profilers = _start_profilers(service, options.seconds, workdir) if options.profile else []
        start = time.monotonic()
        subs = asyncio.run(
            drive(
                service.base_url,
                api_key,
                templates,
                rate=options.rate,
                seconds=options.seconds,
                prefix="post",
                on_tick=tick,
            )
        )
        window = max(s.answered_at for s in subs.values()) - start
        accepted = sum(1 for s in subs.values() if s.status in (200, 202))
        progress(f"submitted; draining (up to {options.drain_timeout_s:g} s)")
        _wait_decided(
            database_url, school_id, accepted + already, timeout_s=options.drain_timeout_s
        )
        cpu_after = service.cpu(database)
        outcomes = read_outcomes(database_url, school_id)
        _wait_callbacks(receiver, sum(1 for o in outcomes.values() if o.decided_at), timeout_s=30)
        for proc in profilers:
            proc.wait(timeout=60)
        result = measure(subs, outcomes, receiver.snapshot(), school_id=school_id, window_s=window)
        result.summary.update(
            {
                "offered_rate": options.rate,
                "seconds": options.seconds,
                "workers": options.workers,
                "pool": f"{options.pool} x{options.concurrency}",
                "mix": options.mix,
                "text_scorer": options.text_scorer,
                "backend": "sqlite+sqlite-broker"
                if options.embedded
                else _backend_name(database_url, broker_url),
                "cpu_ms_per_post": cpu_ms_per_post(cpu_before, cpu_after, accepted),
                "photo_kb": [round(b / 1024) for b in material.photo_bytes],
                "logs": str(workdir),
            }
        )
        title = (
            f"{options.mix} mix, {options.rate:g} posts/s, {options.workers} worker(s), "
            f"{result.summary['backend']}"
        )
        png = plot_histogram(result, workdir / "latency.png", title)
        if png is not None:
            result.summary["histogram"] = str(png)
        (workdir / "result.json").write_text(json.dumps(result.summary, indent=2))
    return result


def _start_profilers(
    service: Service, seconds: float, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    named = [("api", service.api.pid)] + [(w.name, w.pid) for w in service.workers]
    started = (_profiler(pid, seconds, workdir / f"profile-{name}.txt") for name, pid in named)
    return [proc for proc in started if proc is not None]


def _backend_name(database_url: str, broker_url: str) -> str:
    return f"{database_url.split(':', 1)[0].split('+')[0]}+{broker_url.split(':', 1)[0]}"


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_decided(database_url: str, school_id: str, expected: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while decided_count(database_url, school_id) < expected and time.monotonic() < deadline:
        time.sleep(0.25)


def _wait_callbacks(receiver: CallbackReceiver, expected: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(receiver.snapshot()) < expected and time.monotonic() < deadline:
        time.sleep(0.25)


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable report."""
    kinds = "; ".join(
        f"{kind} n={v['n']} p50 {v['p50_ms']:.0f} / p95 {v['p95_ms']:.0f} ms"
        for kind, v in summary["by_kind"].items()
    )
    cb = summary["callbacks"]
    cpu = summary["cpu_ms_per_post"]
    lines = [
        f"{summary['backend']}, {summary['workers']} worker(s) ({summary['pool']}), "
        f"{summary['mix']} mix, "
        f"{summary['text_scorer']} text scorer, offered {summary['offered_rate']:g} posts/s "
        f"for {summary['seconds']:g} s",
        f"accepted {summary['posts_per_s']} posts/s ({summary['accepted']} of "
        f"{summary['submitted']}; refused {summary['refused']}), decided "
        f"{summary['decided_per_s']} posts/s",
        f"decision latency p50 {summary['p50_ms']:.0f} ms, p95 {summary['p95_ms']:.0f} ms, "
        f"p99 {summary['p99_ms']:.0f} ms, max {summary['max_ms']:.0f} ms",
        f"  by kind: {kinds}",
        f"submit round trip p50 {summary['submit_p50_ms']:.0f} ms, "
        f"p95 {summary['submit_p95_ms']:.0f} ms",
        f"lost {summary['lost']}, duplicated {summary['duplicated']}; callbacks delivered "
        f"{cb['delivered']}, missing {cb['missing']}, duplicated {cb['duplicated']}",
        f"CPU per post: API {cpu['api']} ms, workers {cpu['workers']} ms"
        + (f", PostgreSQL {cpu['postgres']} ms" if "postgres" in cpu else ""),
        f"statuses: {summary['statuses']}",
        f"logs and result.json: {summary['logs']}",
    ]
    if "histogram" in summary:
        lines.append(f"latency histogram: {summary['histogram']}")
    return "\n".join(lines)
