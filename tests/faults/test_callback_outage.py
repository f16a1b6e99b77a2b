"""The platform's callback endpoint is down (connections refused) for a good while,
then back: every decision made meanwhile is delivered once it is, each with its
idempotency key, and the outbox records the failed attempts."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.storage.db import get_sessionmaker
from moderation.storage.tables import Callback
from tests.faults.conftest import OpenStack, PostFlow, assert_settled
from tests.helpers import CallbackReceiver, wait_until
from tests.private_services import PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.slow]

DOWN_S = 20  # with the backoff capped at 2 s: about ten retries per callback


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
    flow = PostFlow(stack, prefix="cb")
    flow.run(6)
    wait_until(
        lambda: _failed_attempts(stack.db_url, stack.school_id) >= 2 * len(flow.accepted),
        timeout_s=DOWN_S,
        what="retries while the endpoint is down",
    )
    receiver.start()
    assert_settled(stack, flow, receiver)
    assert receiver.attempts == sum(receiver.keys().values())  # nothing failed once it was back


def _failed_attempts(db_url: str, school_id: str) -> int:
    with get_sessionmaker(db_url)() as session:
        return sum(
            session.scalars(select(Callback.attempts).where(Callback.school_id == school_id))
        )
