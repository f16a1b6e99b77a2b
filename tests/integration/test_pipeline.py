"""The whole path with real parts: the API, a real Celery worker process, PostgreSQL and
Redis (or RabbitMQ) on this machine, and a local HTTP server as the platform."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from kombu import Connection
from sqlalchemy import select

from moderation.api.main import create_app
from moderation.queue import ALL_QUEUES
from moderation.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify
from moderation.storage.db import get_sessionmaker
from moderation.storage.tables import Flag, Post, School
from tests.conftest import Configure, new_school
from tests.helpers import (
    ROSTER,
    CallbackReceiver,
    Stack,
    attachment,
    jpeg_bytes,
    post_body,
    wait_until,
)

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"

pytestmark = pytest.mark.services


def purge(broker_url: str) -> None:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in ALL_QUEUES:
            try:
                channel.queue_purge(queue)
            except Exception:  # the queue does not exist yet
                channel = conn.channel()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue("redis_url")) if request.param == "redis" else RABBIT_URL
    purge(url)
    return url


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    yield server
    server.close()


@pytest.fixture
def stack(configure: Configure, pg_url: str, redis_url: str, receiver) -> Iterator[Stack]:
    """PostgreSQL + Redis, fake scorer; start workers with ``start_worker`` in the test."""
    configure(
        database_url=pg_url,
        broker_url=redis_url,
        text_scorer="fake",
        task_max_retries="1",
        pending_timeout_s="3",
        sweep_interval_s="1",
        broker_visibility_timeout_s="5",
    )
    school_id = f"school-{secrets.token_hex(3)}"
    key = new_school(pg_url, school_id, webhook_url=receiver.url)
    with TestClient(create_app()) as client:
        assert (
            client.post(
                "/v1/roster", json=ROSTER, headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 200
        )
        yield Stack(client, key, pg_url, school_id)


def test_on_postgres_and_each_broker_posts_are_decided(
    configure: Configure, pg_url: str, broker_url: str, start_worker
):
    configure(database_url=pg_url, broker_url=broker_url, text_scorer="fake")
    school_id = f"school-{secrets.token_hex(3)}"
    key = new_school(pg_url, school_id)
    start_worker()
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app()) as client:
        client.post("/v1/roster", json=ROSTER, headers=headers)
        r = client.post("/v1/posts?wait=10", json=post_body("ok"), headers=headers)
        assert (r.status_code, r.json()["status"]) == (200, "released")
        r = client.post(
            "/v1/posts?wait=10", json=post_body("bad", "jij FAKE_INSULT"), headers=headers
        )
        body = r.json()
        assert body["status"] == "rejected"
        reason = body["decision"]["reasons"][0]
        assert reason["code"] == "text_insult"
        assert reason["category"] == "insult"
        assert reason["spans"] == [[4, 15]]
        assert "schelden" in reason["message_nl"].lower()


def test_decision_callback_is_signed_and_idempotent(stack: Stack, receiver, start_worker):
    start_worker()
    stack.submit(post_body("p-cb", "Wie wil er rijden naar het museum?"), wait=10)
    wait_until(lambda: receiver.received, what="the callback")
    headers, body = receiver.received[0]
    with get_sessionmaker(stack.db_url)() as session:
        secret = session.get(School, stack.school_id).webhook_secret  # type: ignore[union-attr]
    assert verify(secret, body, headers[SIGNATURE_HEADER])
    assert not verify("another-secret", body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["id"] == "p-cb"
    assert payload["status"] == "released"
    assert headers[IDEMPOTENCY_HEADER] == f"{stack.school_id}:p-cb:decision:1"


def test_callback_endpoint_down_then_back_is_retried(
    configure: Configure, stack: Stack, start_worker
):
    flaky = CallbackReceiver(fail_first=2)
    try:
        start_worker()
        body = post_body("p-flaky", "Fijne vakantie!", callback_url=flaky.url)
        assert stack.submit(body, wait=10)["status"] == "released"
        wait_until(lambda: flaky.received, timeout_s=60, what="a retried callback")
        assert flaky.attempts == 3
    finally:
        flaky.close()


def test_photos_are_checked_and_released_without_metadata(stack: Stack, start_worker):
    start_worker()
    body = post_body("p-photo", "Kijk eens!", attachments=[attachment("a1")])
    result = stack.submit(body, wait=10)
    assert result["status"] == "released"
    assert result["decision"]["attachments"] == [
        {"id": "a1", "action": "release", "reasons": [], "blur": False}
    ]


def test_scoring_failure_after_retries_holds_the_post(stack: Stack, start_worker):
    start_worker()
    stack.submit(post_body("p-fail", "FAKE_FAIL"))
    wait_until(
        lambda: stack.get("p-fail")["status"] != "pending",
        timeout_s=60,
        what="the failed post to be decided",
    )
    post = stack.get("p-fail")
    assert post["status"] == "held"
    assert [r["code"] for r in post["decision"]["reasons"]] == ["scoring_failed"]
    with get_sessionmaker(stack.db_url)() as session:
        flags = session.scalars(
            select(Flag)
            .join(Post)
            .where(Post.external_id == "p-fail", Post.school_id == stack.school_id)
        ).all()
        assert [(f.reason, f.status) for f in flags] == [("scoring_failed", "open")]


def test_worker_killed_mid_task_still_gives_exactly_one_decision(
    configure: Configure, stack: Stack, start_worker
):
    configure(fake_scorer_delay_s="30")
    slow = start_worker(queues="text")
    stack.submit(post_body("p-kill", "Hallo juf, tot morgen"))
    wait_until(
        lambda: "score_text" in slow.log_text() and "received" in slow.log_text(),
        what="the worker to take the task",
    )
    slow.kill()
    assert stack.get("p-kill")["status"] == "pending"
    configure(fake_scorer_delay_s="0")
    start_worker(beat=True)
    wait_until(
        lambda: stack.get("p-kill")["status"] != "pending",
        timeout_s=60,
        what="the killed task to be redone",
    )
    assert stack.get("p-kill")["status"] == "released"
    wait_until(lambda: stack.decisions("p-kill") >= 1)
    # redelivery and the sweeper may both redo the work: still one decision
    import time

    time.sleep(4)
    assert stack.decisions("p-kill") == 1


def test_many_posts_each_decided_once(stack: Stack, start_worker):
    start_worker()
    start_worker(queues="text,callbacks")
    ids = [f"bulk-{i}" for i in range(30)]
    for i, post_id in enumerate(ids):
        text = "FAKE_THREAT" if i % 5 == 0 else "gewoon een berichtje"
        atts = [attachment("a", jpeg_bytes((32 + i, 32)))] if i % 3 == 0 else []
        stack.submit(post_body(post_id, text, attachments=atts))
    wait_until(
        lambda: all(stack.get(p)["status"] != "pending" for p in ids),
        timeout_s=90,
        what="all posts to be decided",
    )
    statuses = [stack.get(p)["status"] for p in ids]
    assert statuses.count("held") == 6
    assert statuses.count("released") == 24
    assert all(stack.decisions(p) == 1 for p in ids)


def test_post_accepted_while_the_broker_is_down_is_decided_later(
    configure: Configure, stack: Stack, redis_url: str, start_worker
):
    configure(broker_url="redis://127.0.0.1:1/0")  # nothing listens there
    with TestClient(create_app()) as cut_off:
        r = cut_off.post(
            "/v1/posts", json=post_body("p-nobroker", "Tot morgen!"), headers=stack.headers
        )
    assert (r.status_code, r.json()["status"]) == (202, "pending")
    configure(broker_url=redis_url)
    start_worker(beat=True)  # the sweeper finds the post that never reached a queue
    wait_until(
        lambda: stack.get("p-nobroker")["status"] != "pending",
        timeout_s=60,
        what="the sweeper to send the post",
    )
    assert stack.get("p-nobroker")["status"] == "released"
    assert stack.decisions("p-nobroker") == 1
