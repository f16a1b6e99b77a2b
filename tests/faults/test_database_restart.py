"""PostgreSQL crashes while posts flow (``pg_ctl stop -m immediate``: every connection
drops mid-query) and comes back after a few seconds. Meanwhile the API refuses posts
with a retryable 5xx and the platform sends them again; workers retry, and a database
outage is never mistaken for a scoring failure."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from moderation.api.main import create_app
from tests.faults.conftest import OpenStack, PostFlow, assert_settled
from tests.helpers import CallbackReceiver, post_body
from tests.private_services import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_postgres_restart_while_posts_flow(
    open_stack: OpenStack,
    private_postgres: PrivatePostgres,
    private_pg_url: str,
    private_redis: PrivateRedis,
    receiver: CallbackReceiver,
    start_worker,
):
    stack = open_stack(private_pg_url, private_redis.url())
    start_worker(beat=True)
    flow = PostFlow(stack, prefix="pg")
    flow.run(
        10,
        events=[(3, lambda: private_postgres.stop(mode="immediate")), (6, private_postgres.start)],
    )
    assert flow.refused > 0, "the outage should have refused some posts"
    assert set(flow.answers) <= {200, 202, 503}, flow.answers  # retryable, never a 500
    assert_settled(stack, flow, receiver)


def test_the_api_answers_503_while_the_database_is_away(
    configure, private_postgres: PrivatePostgres, private_pg_url: str
):
    configure(database_url=private_pg_url, broker_url="redis://127.0.0.1:1/0")
    private_postgres.stop(mode="immediate")
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        r = client.post(
            "/v1/posts", json=post_body("p"), headers={"Authorization": "Bearer msk_whatever"}
        )
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "database_unavailable"
    assert int(r.headers["Retry-After"]) > 0
