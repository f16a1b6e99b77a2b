"""Signatures on decision callbacks, so the platform knows a callback came from us.

Header ``X-Moderation-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` where the MAC
is over ``"<t>." + raw body`` under the school's webhook secret. The platform checks the
MAC with a constant-time comparison and refuses a ``t`` older than a few minutes.
``Idempotency-Key`` identifies the decision: a redelivery carries the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Moderation-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_AGE_S = 300  # seconds a signature stays acceptable


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={_mac(secret, ts, body)}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > MAX_AGE_S:
        return False
    return hmac.compare_digest(given, _mac(secret, ts, body))
