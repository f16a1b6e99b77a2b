"""Redis, the broker, dies while posts flow and comes back empty (it keeps nothing on
disk): every queued and unacknowledged task is gone. The API keeps accepting posts (they
are committed before they are queued), workers reconnect, and the sweeper re-sends what
the broker lost: posts pending too long, and callbacks nobody tried."""

from __future__ import annotations

import pytest

from tests.faults.conftest import OpenStack, PostFlow, assert_settled, wait_mid_task
from tests.helpers import CallbackReceiver
from tests.private_services import PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_redis_restart_while_posts_flow(
    open_stack: OpenStack,
    pg_url: str,
    private_redis: PrivateRedis,
    receiver: CallbackReceiver,
    start_worker,
):
    # a slow scorer keeps the worker busy, so the broker dies under a task in progress
    stack = open_stack(pg_url, private_redis.url(), fake_scorer_delay_s="0.15")
    worker = start_worker(beat=True)

    def kill_redis_mid_task() -> None:
        wait_mid_task(worker)
        private_redis.stop()

    flow = PostFlow(stack, prefix="redis")
    flow.run(10, events=[(3, kill_redis_mid_task), (6, private_redis.start)])
    assert_settled(stack, flow, receiver)
