"""Fault injection: posts flow through the API and real worker processes while a part of
the system dies and comes back. Every test ends with the same proof: each accepted post
decided exactly once, as its content says, and each decision callback delivered at
least once with its idempotency key (:func:`assert_settled`).

The servers a test breaks are its own (``private_redis``, ``private_postgres`` from
``tests/conftest.py``); the machine's shared PostgreSQL and Redis are never restarted.
Recovery settings are shortened (``FAST_RECOVERY``) so each test stays near a minute.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from moderation.api.main import create_app
from moderation.storage.db import dispose_engine, get_sessionmaker
from moderation.storage.tables import Callback
from tests.conftest import Configure, WorkerProcess, new_school
from tests.helpers import ROSTER, CallbackReceiver, Stack, attachment, jpeg_bytes, wait_until

# Every recovery path, shortened from minutes to seconds; same code paths as production.
FAST_RECOVERY = {
    "text_scorer": "fake",
    "media_scorer": "fake",  # the plumbing is under test here, not the image models
    "fake_scorer_delay_s": "0.02",  # each task takes a moment, so faults land mid-task
    "task_max_retries": "3",
    "pending_timeout_s": "3",  # the sweeper re-sends posts pending this long
    "sweep_interval_s": "1",
    "broker_visibility_timeout_s": "8",  # Redis redelivers an unacknowledged task
    "callback_backoff_cap_s": "2",  # longest wait between two callback attempts
    "callback_stale_after_s": "5",  # the sweeper re-sends a callback nobody tried
    "callback_max_retries": "200",
    "rate_limit": "100000/minute",
}

SETTLE_TIMEOUT_S = 60.0


@dataclass
class Sent:
    body: dict[str, Any]
    expected: str  # the status the fake scorer's content leads to


@dataclass
class PostFlow:
    """Posts sent at a steady pace, as the platform sends them: a post the API could not
    take (a 5xx answer or a broken connection) is sent again, same id and body, until it
    is accepted. ``accepted`` is what the platform was told the service has."""

    stack: Stack
    prefix: str = "flow"
    rate_per_s: float = 5.0
    accepted: dict[str, Sent] = field(default_factory=dict)
    refused: int = 0  # answers that were not 2xx (or no answer at all)
    answers: Counter[int] = field(default_factory=Counter)  # HTTP status (0: no answer)
    _waiting: list[Sent] = field(default_factory=list)
    _count: int = 0

    def _next(self) -> Sent:
        if self._waiting:
            return self._waiting.pop(0)
        i = self._count
        self._count += 1
        post_id = f"{self.prefix}-{i}"
        if i % 7 == 3:
            return Sent(_body(post_id, "Wat ben jij een FAKE_INSULT zeg"), "rejected")
        atts = [attachment("foto", jpeg_bytes((40 + i % 50, 30)))] if i % 4 == 1 else []
        text = f"Morgen gaan we naar de kinderboerderij, bericht {i}"
        return Sent(_body(post_id, text, atts), "released")

    def send(self, sent: Sent) -> bool:
        try:
            r = self.stack.client.post("/v1/posts", json=sent.body, headers=self.stack.headers)
        except (httpx.HTTPError, OSError):
            r = None
        self.answers[r.status_code if r is not None else 0] += 1
        if r is not None and r.status_code in (200, 202):
            self.accepted[sent.body["id"]] = sent
            return True
        assert r is None or r.status_code >= 500, r.text  # a fault is never the client's error
        self.refused += 1
        self._waiting.append(sent)
        return False

    def run(
        self, seconds: float, events: Sequence[tuple[float, Callable[[], object]]] = ()
    ) -> None:
        """Send for ``seconds`` while ``events`` run in order, each once its time (from the
        start) has come, on a thread of their own: an event that waits (for a task in
        progress, say) never pauses the flow, which would let the worker run dry."""
        start = time.monotonic()
        failures: list[BaseException] = []

        def script() -> None:
            try:
                for at, action in sorted(events, key=lambda e: e[0]):
                    time.sleep(max(0.0, at - (time.monotonic() - start)))
                    action()
            except BaseException as exc:  # re-raised in the test's thread below
                failures.append(exc)

        faults = threading.Thread(target=script, name="faults", daemon=True)
        faults.start()
        tick = 1.0 / self.rate_per_s
        while (now := time.monotonic() - start) < seconds or faults.is_alive():
            if now < seconds:
                self.send(self._next())
            time.sleep(max(0.0, tick - (time.monotonic() - start - now)))
        faults.join()
        if failures:
            raise failures[0]
        self.resend_waiting()

    def resend_waiting(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._waiting and time.monotonic() < deadline:
            if not self.send(self._waiting.pop(0)):
                time.sleep(0.2)
        assert not self._waiting, f"{len(self._waiting)} posts were never accepted"


def wait_mid_task(worker: WorkerProcess, task: str = "score_text", timeout_s: float = 10) -> None:
    """Return while ``worker`` is inside a ``task`` (the log says a task of that name was
    received and not yet that it finished), so a fault lands mid-task. Tasks overlap in a
    threads pool, so this follows task ids, not the order of the lines."""
    pattern = re.compile(rf"Task moderation\.{task}\[([0-9a-f-]+)\] (received|succeeded|failed)")

    def busy() -> bool:
        started: set[str] = set()
        finished: set[str] = set()
        for found in pattern.finditer(worker.log_text()):
            (started if found[2] == "received" else finished).add(found[1])
        return bool(started - finished)

    deadline = time.monotonic() + timeout_s
    while not busy():
        assert time.monotonic() < deadline, (
            f"the worker never took a {task} task; its log ends:\n{worker.log_text()[-3000:]}"
        )
        time.sleep(0.005)


def _body(post_id: str, text: str, atts: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "id": post_id,
        "channel": {"type": "group", "id": "groep-5a"},
        "author": {"id": "parent-1", "role": "parent"},
        "text": text,
        "attachments": atts or [],
    }


def assert_settled(
    stack: Stack, flow: PostFlow, receiver: CallbackReceiver, timeout_s: float = SETTLE_TIMEOUT_S
) -> None:
    """Every accepted post decided exactly once, as its content says, and every decision
    callback delivered at least once with its idempotency key."""
    assert flow.accepted, "no post was accepted"
    ids = set(flow.accepted)

    def undecided() -> set[str]:
        statuses = stack.statuses()
        return {i for i in ids if statuses.get(i, "pending") == "pending"}

    wait_until(lambda: not undecided(), timeout_s, what="every accepted post to be decided")
    counts = stack.decision_counts()
    assert {i: counts.get(i, 0) for i in ids if counts.get(i, 0) != 1} == {}
    statuses = stack.statuses()
    wrong = {i: statuses[i] for i in ids if statuses[i] != flow.accepted[i].expected}
    assert wrong == {}, "a fault changed a decision (scoring_failed?)"
    assert set(statuses) == ids, "the database holds a post the platform never heard of"

    keys = {f"{stack.school_id}:{i}:decision:1" for i in ids}
    wait_until(
        lambda: keys <= set(receiver.keys()),
        timeout_s,
        what=f"callbacks ({len(keys - set(receiver.keys()))} of {len(keys)} missing)",
    )
    with get_sessionmaker(stack.db_url)() as session:
        rows = session.execute(
            select(Callback.idempotency_key, Callback.status).where(
                Callback.school_id == stack.school_id
            )
        ).all()
    assert {key for key, _ in rows} == keys  # one outbox row per decision
    wait_until(
        lambda: _all_marked_delivered(stack),
        timeout_s=15,
        what="the outbox to mark every callback delivered",
    )


def _all_marked_delivered(stack: Stack) -> bool:
    with get_sessionmaker(stack.db_url)() as session:
        statuses = session.scalars(
            select(Callback.status).where(Callback.school_id == stack.school_id)
        ).all()
    return all(s == "delivered" for s in statuses)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    yield server
    server.close()


OpenStack = Callable[..., Stack]


@pytest.fixture
def open_stack(configure: Configure, receiver: CallbackReceiver) -> Iterator[OpenStack]:
    """``open_stack(database_url, broker_url)``: the API in process for a new school
    whose webhook is ``receiver``, with the roster loaded and ``FAST_RECOVERY`` set."""
    clients: list[TestClient] = []
    urls: list[str] = []

    def open_(database_url: str, broker_url: str, **settings: str) -> Stack:
        configure(database_url=database_url, broker_url=broker_url, **{**FAST_RECOVERY, **settings})
        school_id = f"school-{secrets.token_hex(3)}"
        key = new_school(database_url, school_id, webhook_url=receiver.url)
        # a server error during a fault is an answer the flow checks, not a test crash
        client = TestClient(create_app(), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        urls.append(database_url)
        r = client.post("/v1/roster", json=ROSTER, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        return Stack(client, key, database_url, school_id)

    yield open_
    for client in clients:
        client.__exit__(None, None, None)
    for url in urls:
        dispose_engine(url)
