"""The HTTP contract: intake, idempotency, bad input, tenant isolation, rate limits.

These run the real app on a real SQLite database; tasks go to the embedded SQLite broker
and no worker consumes them here (the pipeline is tested in ``tests/integration``).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from moderation.api.main import create_app
from moderation.storage.db import get_sessionmaker
from moderation.storage.tables import Attachment, AuditEvent, Post
from tests.conftest import Configure, new_school
from tests.helpers import ROSTER, attachment, jpeg_bytes, post_body


@pytest.fixture
def api(configure: Configure, sqlite_url: str) -> Iterator[tuple[TestClient, str, str]]:
    configure(database_url=sqlite_url, rate_limit="1000/minute")
    key_a = new_school(sqlite_url, "school-a")
    key_b = new_school(sqlite_url, "school-b")
    with TestClient(create_app()) as client:
        for key in (key_a, key_b):
            r = client.post("/v1/roster", json=ROSTER, headers=auth(key))
            assert r.status_code == 200, r.text
        yield client, key_a, key_b


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def count_posts(url: str) -> int:
    with get_sessionmaker(url)() as session:
        return int(session.scalar(select(func.count()).select_from(Post)) or 0)


def test_post_is_accepted_pending_and_readable(api):
    client, key, _ = api
    r = client.post("/v1/posts", json=post_body(attachments=[attachment()]), headers=auth(key))
    assert r.status_code == 202, r.text
    assert r.json() == {"id": "p1", "status": "pending", "decision": None}
    r = client.get("/v1/posts/p1", headers=auth(key))
    assert r.status_code == 200
    assert r.json()["status"] == "pending"


def test_same_id_same_body_returns_the_post_and_different_body_conflicts(api, sqlite_url):
    client, key, _ = api
    assert client.post("/v1/posts", json=post_body(), headers=auth(key)).status_code == 202
    again = client.post("/v1/posts", json=post_body(), headers=auth(key))
    assert again.status_code == 200
    assert again.json()["id"] == "p1"
    other = client.post("/v1/posts", json=post_body(text="iets anders"), headers=auth(key))
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "post_id_conflict"
    assert count_posts(sqlite_url) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (post_body(text="x" * 10_001), 422, "text_too_long"),
        (post_body(text="", attachments=[]), 422, "empty_post"),
        (post_body(channel={"type": "group", "id": "groep-9z"}), 422, "unknown_channel"),
        (post_body(channel={"type": "kindgesprek", "id": "ll-99"}), 422, "unknown_channel"),
        (post_body(channel={"type": "forum", "id": "x"}), 422, "invalid_field"),
        (post_body(tagged_students=["ll-1", "ll-404"]), 422, "unknown_student"),
        (post_body(author={"id": "x", "role": "hacker"}), 422, "invalid_field"),
        (post_body(unexpected="field"), 422, "invalid_field"),
        ({"id": "p1"}, 422, "invalid_field"),
        (
            post_body(attachments=[attachment(f"a{i}") for i in range(11)]),
            422,
            "too_many_attachments",
        ),
        (
            post_body(attachments=[attachment("a1"), attachment("a1")]),
            422,
            "duplicate_attachment_id",
        ),
        (
            post_body(attachments=[{"id": "a1", "content_type": "image/jpeg", "data": "***"}]),
            422,
            "invalid_base64",
        ),
        (
            post_body(attachments=[attachment(content_type="application/pdf")]),
            415,
            "unsupported_media_type",
        ),
        (
            post_body(attachments=[attachment(data=b"%PDF-1.4 not an image")]),
            415,
            "unsupported_media_type",
        ),
        (post_body(attachments=[attachment(data=jpeg_bytes()[:200])]), 422, "image_unreadable"),
    ],
)
def test_bad_posts_get_a_precise_4xx_and_leave_no_record(api, sqlite_url, body, status, code):
    client, key, _ = api
    r = client.post("/v1/posts", json=body, headers=auth(key))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert count_posts(sqlite_url) == 0
    with get_sessionmaker(sqlite_url)() as session:
        assert session.scalar(select(func.count()).select_from(Attachment)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_decompression_bomb_is_refused(api, sqlite_url):
    client, key, _ = api
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, "PNG")  # 400 Mpx, a few KB compressed
    body = post_body(attachments=[attachment(data=buf.getvalue(), content_type="image/png")])
    r = client.post("/v1/posts", json=body, headers=auth(key))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "image_too_large"
    assert count_posts(sqlite_url) == 0


def test_malformed_json_and_non_object_bodies(api):
    client, key, _ = api
    headers = {**auth(key), "Content-Type": "application/json"}
    r = client.post("/v1/posts", content=b'{"id": "p1", ', headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_json")
    r = client.post("/v1/posts", content=b"[1, 2]", headers=headers)
    assert r.status_code in (400, 422)
    assert r.json()["error"]["code"] in ("malformed_json", "invalid_field")


def test_oversized_request_is_refused_before_reading(api, configure, sqlite_url):
    _, key, _ = api
    configure(max_request_bytes="1000")
    with TestClient(create_app()) as small:
        r = small.post("/v1/posts", json=post_body(text="a" * 2000), headers=auth(key))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")
    assert count_posts(sqlite_url) == 0


def test_oversized_attachment(api, configure, sqlite_url):
    _, key, _ = api
    configure(max_attachment_bytes="1000")
    with TestClient(create_app()) as small:
        big = attachment(data=jpeg_bytes((400, 400)))
        r = small.post("/v1/posts", json=post_body(attachments=[big]), headers=auth(key))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "attachment_too_large")


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_api_key"), ({"Authorization": "Bearer msk_wrong"}, "invalid_api_key")],
)
def test_requests_without_a_valid_key_are_401(api, headers, code):
    client, _, _ = api
    r = client.post("/v1/posts", json=post_body(), headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (401, code)


def test_a_school_never_sees_another_schools_posts(api):
    client, key_a, key_b = api
    assert (
        client.post("/v1/posts", json=post_body("secret"), headers=auth(key_a)).status_code == 202
    )
    r = client.get("/v1/posts/secret", headers=auth(key_b))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_post")
    # the same platform id in another school is a different post, not a conflict
    r = client.post("/v1/posts", json=post_body("secret", text="anders"), headers=auth(key_b))
    assert r.status_code == 202
    r = client.get("/v1/students/ll-1/consent", headers=auth(key_b))
    assert r.status_code == 200


def test_rate_limit_per_key(api, configure):
    _, key_a, key_b = api
    configure(rate_limit="3/minute", rate_limit_storage="memory://?test=1")
    with TestClient(create_app()) as limited:
        codes = [limited.get("/v1/posts/nope", headers=auth(key_a)).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        r = limited.get("/v1/posts/nope", headers=auth(key_a))
        assert r.json()["error"]["code"] == "rate_limited"
        assert limited.get("/v1/posts/nope", headers=auth(key_b)).status_code == 404


def test_consent_no_wins_and_history_is_kept(api):
    client, key, _ = api
    r = client.get("/v1/students/ll-1/consent", headers=auth(key))
    assert r.json()["scopes"]["app"] is True
    assert r.json()["scopes"]["website"] is False  # nobody answered: no consent
    no = {"student_id": "ll-1", "parent_id": "parent-2", "scope": "app", "granted": False}
    assert client.post("/v1/consent", json=no, headers=auth(key)).status_code == 200
    r = client.get("/v1/students/ll-1/consent", headers=auth(key)).json()
    assert r["scopes"]["app"] is False
    assert [(h["parent_id"], h["granted"]) for h in r["history"] if h["scope"] == "app"] == [
        ("parent-1", True),
        ("parent-2", True),
        ("parent-2", False),
    ]


def test_roster_errors_roll_back_everything(api):
    client, key, _ = api
    bad = {
        "groups": [{"id": "groep-7", "name": "Groep 7"}],
        "students": [{"id": "ll-9", "name": "X", "group_id": "groep-404"}],
    }
    r = client.post("/v1/roster", json=bad, headers=auth(key))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_group")
    r = client.post(
        "/v1/posts", json=post_body(channel={"type": "group", "id": "groep-7"}), headers=auth(key)
    )
    assert r.json()["error"]["code"] == "unknown_channel"


def test_unknown_route_and_method_use_the_error_shape(api):
    client, key, _ = api
    assert client.get("/v1/nothing", headers=auth(key)).json()["error"]["code"] == "not_found"
    r = client.delete("/v1/posts", headers=auth(key))
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_is_served(api):
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    assert "/v1/posts" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_base64_with_whitespace_is_rejected_precisely(api):
    client, key, _ = api
    data = base64.b64encode(jpeg_bytes()).decode()
    body = post_body(attachments=[{"id": "a", "content_type": "image/jpeg", "data": data + "!"}])
    r = client.post("/v1/posts", json=body, headers=auth(key))
    assert r.json()["error"]["code"] == "invalid_base64"


def test_policy_is_versioned_per_school(api):
    client, key_a, key_b = api
    r = client.get("/v1/policy", headers=auth(key_a)).json()
    assert r["version"] == 0
    assert r["document"]["categories"]["threat"][0]["hold_at"] == 0.4
    new = {"categories": {"insult": [{"hold_at": 0.7, "reject_at": 0.9}]}, "retention_days": 60}
    r = client.put("/v1/policy?actor=mw-1", json=new, headers=auth(key_a))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    bad = {"categories": {"insult": [{"hold_at": 2}]}}
    r = client.put("/v1/policy", json=bad, headers=auth(key_a))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_policy")
    assert r.json()["error"]["details"]["fields"][0]["field"] == "categories.insult.0.hold_at"
    assert client.get("/v1/policy", headers=auth(key_a)).json()["document"]["retention_days"] == 60
    assert client.get("/v1/policy", headers=auth(key_b)).json()["version"] == 0
