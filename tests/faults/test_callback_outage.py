"""The platform's callback endpoint is down (connections refused) for a good while,
then back: every decision made meanwhile is delivered once it is, each with its
idempotency key, and the outbox records the failed attempts."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from moderation.storage.db import get_sessionmaker
from moderation.storage.tables import Callback
from tests.faults.conftest import OpenStack, PostFlow, assert_settled
from tests.helpers import CallbackReceiver, Stack, wait_until
from tests.private_services import PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]

DOWN_S = 20  # with the backoff capped at 2 s: about ten attempts per callback


def test_callback_endpoint_down_for_a_while_then_back(
    open_stack: OpenStack,
    pg_url: str,
    private_redis: PrivateRedis,
    receiver: CallbackReceiver,
    start_worker,
):
    stack = open_stack(pg_url, private_redis.url())
    start_worker(beat=True)
    receiver.stop()
    down_at = time.monotonic()
    flow = PostFlow(stack, prefix="cb")
    flow.run(6)
    wait_until(
        lambda: _fewest_attempts(stack) >= 3,
        timeout_s=40,
        what="every callback to fail three times while the endpoint is down",
    )
    time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))
    receiver.start()
    assert_settled(stack, flow, receiver)
    assert receiver.attempts == sum(receiver.keys().values())  # nothing failed once it was back


def _fewest_attempts(stack: Stack) -> int:
    """The fewest delivery attempts of any callback of the school (0 with none yet)."""
    with get_sessionmaker(stack.db_url)() as session:
        attempts = session.scalars(
            select(Callback.attempts).where(Callback.school_id == stack.school_id)
        ).all()
    return min(attempts, default=0)
