"""Delivering decision callbacks from the outbox: signed, at least once, with backoff."""

from __future__ import annotations

import json
import logging
from enum import StrEnum

import httpx

from moderation.config import Settings
from moderation.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from moderation.storage.db import session_scope
from moderation.storage.tables import Callback, School, utcnow

log = logging.getLogger(__name__)


class Delivery(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # nothing to do: unknown or already delivered


def deliver(settings: Settings, callback_pk: int) -> Delivery:
    """One delivery attempt. The outbox row records the attempt either way."""
    with session_scope(settings.database_url) as session:
        cb = session.get(Callback, callback_pk)
        if cb is None or cb.status == "delivered":
            return Delivery.GONE
        school = session.get(School, cb.school_id)
        assert school is not None
        body = json.dumps(cb.payload, separators=(",", ":"), sort_keys=True).encode()
        url, key, secret = cb.url, cb.idempotency_key, school.webhook_secret
    error = None
    try:
        response = httpx.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, body),
                IDEMPOTENCY_HEADER: key,
                "User-Agent": "school-moderation-callback/1",
            },
            timeout=settings.callback_timeout_s,
            follow_redirects=False,
        )
        if not response.is_success:
            error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    with session_scope(settings.database_url) as session:
        cb = session.get(Callback, callback_pk)
        assert cb is not None
        cb.attempts += 1
        cb.updated_at = utcnow()
        if error is None:
            cb.status, cb.delivered_at, cb.last_error = "delivered", utcnow(), None
            return Delivery.DELIVERED
        cb.last_error = error
    log.info("callback %d to the platform failed (%s); will retry", callback_pk, error)
    return Delivery.RETRY


def give_up(settings: Settings, callback_pk: int) -> None:
    with session_scope(settings.database_url) as session:
        cb = session.get(Callback, callback_pk)
        if cb is not None and cb.status == "pending":
            cb.status = "failed"
            cb.updated_at = utcnow()
