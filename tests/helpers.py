"""Small builders shared by the tests."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image


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

    ``fail_first`` answers 503 to that many requests before accepting.
    """

    def __init__(self, fail_first: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/moderation-callback"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate: Any, timeout_s: float = 30, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
