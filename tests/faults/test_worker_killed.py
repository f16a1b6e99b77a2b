"""A worker is SIGKILLed mid-task while posts flow (the single-post case is in
``tests/integration/test_pipeline.py``): its unacknowledged tasks come back (Redis
redelivers after the visibility timeout, the sweeper re-sends pending posts) and the
idempotent writes still give each post exactly one decision."""

from __future__ import annotations

import pytest

from tests.faults.conftest import OpenStack, PostFlow, assert_settled, wait_mid_task
from tests.helpers import CallbackReceiver
from tests.private_services import PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_worker_killed_mid_task_while_posts_flow(
    open_stack: OpenStack,
    pg_url: str,
    private_redis: PrivateRedis,
    receiver: CallbackReceiver,
    start_worker,
):
    stack = open_stack(pg_url, private_redis.url(), fake_scorer_delay_s="0.3")
    start_worker(beat=True)
    victim = start_worker(queues="text,media,callbacks")

    def kill_mid_task() -> None:
        wait_mid_task(victim)
        victim.kill()

    flow = PostFlow(stack, prefix="kill")
    flow.run(10, events=[(4, kill_mid_task), (6, lambda: start_worker(queues="text,media"))])
    assert_settled(stack, flow, receiver)
