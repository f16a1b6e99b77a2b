"""Small builders shared by the tests."""

from __future__ import annotations

import base64
import io
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from moderation.signing import IDEMPOTENCY_HEADER
from moderation.storage.db import get_sessionmaker
from moderation.storage.tables import Decision, Post


def jpeg_bytes(size: tuple[int, int] = (64, 48), color: str = "orange") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def attachment(att_id: str = "a1", data: bytes | None = None, content_type: str = "image/jpeg"):
    raw = jpeg_bytes() if data is None else data
    return {"id": att_id, "content_type": content_type, "data": base64.b64encode(raw).decode()}


def post_body(
    post_id: str = "p1", text: str = "Hoi allemaal, morgen is de schoolreis!", **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": post_id,
        "channel": {"type": "group", "id": "groep-5a"},
        "author": {"id": "parent-1", "role": "parent"},
        "text": text,
    }
    body.update(overrides)
    return body


ROSTER = {
    "groups": [{"id": "groep-5a", "name": "Groep 5a"}, {"id": "groep-6b", "name": "Groep 6b"}],
    "students": [
        {"id": "ll-1", "name": "Sanne de Vries", "group_id": "groep-5a"},
        {"id": "ll-2", "name": "Mohammed El Amrani", "group_id": "groep-5a"},
        {"id": "ll-3", "name": "Daan Jansen", "group_id": "groep-6b"},
    ],
    "staff": [{"id": "mw-1", "name": "Juf Anouk", "role": "teacher", "group_ids": ["groep-5a"]}],
    "parents": [
        {"id": "parent-1", "name": "Eva de Vries", "student_ids": ["ll-1"]},
        {"id": "parent-2", "name": "Pieter de Vries", "student_ids": ["ll-1"]},
    ],
    "consent": [
        {"student_id": "ll-1", "parent_id": "parent-1", "scope": "app", "granted": True},
        {"student_id": "ll-1", "parent_id": "parent-2", "scope": "app", "granted": True},
    ],
}


class CallbackReceiver:
    """A local HTTP server standing in for the platform's callback endpoint.

    ``fail_first`` answers 503 to that many requests before accepting. ``stop()`` closes
    the listening socket (the platform is down: connections are refused) and ``start()``
    opens it again on the same port.
    """

    def __init__(self, fail_first: int = 0) -> None:
        import threading

        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()
        self._port = 0
        self.server: Any = None
        self.start()

    def _handler(self) -> Any:
        from http.server import BaseHTTPRequestHandler

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing:
                        receiver.received.append((dict(self.headers.items()), body))
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self._port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/moderation-callback"

    def keys(self) -> Counter[str]:
        """How often each idempotency key was delivered (answered 2xx)."""
        with self._lock:
            return Counter(headers.get(IDEMPOTENCY_HEADER, "") for headers, _ in self.received)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    close = stop


class Stack:
    """The API in process (a ``TestClient``) for one school, and its database."""

    def __init__(self, client: TestClient, key: str, db_url: str, school_id: str) -> None:
        self.client, self.key, self.db_url, self.school_id = client, key, db_url, school_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit(self, body: dict[str, Any], wait: float = 0) -> Any:
        r = self.client.post(f"/v1/posts?wait={wait}", json=body, headers=self.headers)
        assert r.status_code in (200, 202), r.text
        return r.json()

    def get(self, post_id: str) -> Any:
        return self.client.get(f"/v1/posts/{post_id}", headers=self.headers).json()

    def decisions(self, post_id: str) -> int:
        return self.decision_counts().get(post_id, 0)

    def decision_counts(self) -> dict[str, int]:
        """Decisions stored per post of this school (posts without one are left out)."""
        with get_sessionmaker(self.db_url)() as session:
            rows = session.execute(
                select(Post.external_id, func.count(Decision.pk))
                .join(Decision, Post.pk == Decision.post_pk)
                .where(Post.school_id == self.school_id)
                .group_by(Post.external_id)
            ).all()
        return {post_id: int(n) for post_id, n in rows}

    def statuses(self) -> dict[str, str]:
        """Every post of this school and its status, read from the database."""
        with get_sessionmaker(self.db_url)() as session:
            rows = session.execute(
                select(Post.external_id, Post.status).where(Post.school_id == self.school_id)
            ).all()
        return {post_id: status for post_id, status in rows}


def wait_until(predicate: Any, timeout_s: float = 30, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
