"""The photo gate's HTTP contract: reference photos, erasure, the block list, removals,
released copies and takedown reports; every 4xx code, and tenant isolation.

The real app on a real SQLite database; tasks go to a real Redis broker, read back here
to see that a re-check was queued. Enrolment runs the real face model on the shared
photos.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from moderation.api.main import create_app
from moderation.domain import Action
from moderation.queue import RECHECK_SCHOOL
from moderation.storage import takedowns
from moderation.storage.db import session_scope
from moderation.storage.posts import get_post
from moderation.storage.tables import AuditEvent, FaceReference, ImageHash, utcnow
from tests.conftest import Configure, new_school
from tests.helpers import ROSTER
from tests.moderation.photos import (
    blurred,
    cropped,
    decided_post,
    encode,
    photo,
    photo_bytes,
    plain_jpeg,
    small_face,
    two_faces,
)

ROSTER_A = {
    **ROSTER,
    "students": [
        *ROSTER["students"],
        {"id": "ll-a", "name": "Alleen In A", "group_id": "groep-5a"},
    ],
}
WEBHOOK = "http://127.0.0.1:9/webhook"


@dataclass
class Api:
    client: TestClient
    url: str
    redis_url: str
    key_a: str
    key_b: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key_a}"}

    def queued(self, queue: str = "maintenance") -> list[tuple[str, list[Any], dict[str, Any]]]:
        """(task name, args, kwargs) of the messages waiting on a broker queue."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            found = []
            for raw in client.lrange(queue, 0, -1):
                message = json.loads(raw)
                args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
                found.append((message["headers"]["task"], args, kwargs))
            return found
        finally:
            client.close()


@pytest.fixture
def api(configure: Configure, sqlite_url: str, redis_url: str) -> Iterator[Api]:
    configure(database_url=sqlite_url, broker_url=redis_url, rate_limit="10000/minute")
    key_a = new_school(sqlite_url, "school-a", webhook_url=WEBHOOK)
    key_b = new_school(sqlite_url, "school-b", webhook_url=WEBHOOK)
    with TestClient(create_app()) as client:
        for key, roster in ((key_a, ROSTER_A), (key_b, ROSTER)):
            r = client.post("/v1/roster", json=roster, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        yield Api(client, sqlite_url, redis_url, key_a, key_b)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def reference_body(data: bytes, content_type: str = "image/jpeg", by: str = "mw-1") -> dict:
    return {"photo": b64(data), "content_type": content_type, "enrolled_by": by}


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


# --- reference photos -------------------------------------------------------------------


def test_enrolment_stores_only_the_descriptor_and_queues_a_recheck(api: Api):
    r = api.client.post(
        "/v1/students/ll-1/reference-photos",
        json=reference_body(photo_bytes("barack_obama/obama.jpg")),
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "student_id", "model", "enrolled_by", "source", "enrolled_at"}
    assert (body["student_id"], body["model"], body["enrolled_by"], body["source"]) == (
        "ll-1",
        "dlib-resnet-v1",
        "mw-1",
        "api",
    )
    assert api.queued() == [
        (
            RECHECK_SCHOOL,
            [],
            {"school_id": "school-a", "student_id": "ll-1", "reason": "reference_added"},
        )
    ]
    listed = api.client.get("/v1/students/ll-1/reference-photos", headers=api.auth())
    assert listed.status_code == 200
    assert listed.json() == {"data": [body], "count": 1}
    with session_scope(api.url) as session:
        row = session.get(FaceReference, body["id"])
        assert row is not None and len(row.embedding) == 512  # 128 float32, no photo
        details = json.dumps([e.detail for e in session.scalars(select(AuditEvent))])
    stored = row.embedding
    assert "embedding" not in details and b64(stored)[:40] not in details
    assert "embedding" not in r.text and "embedding" not in listed.text


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: reference_body(plain_jpeg()), 422, "no_face"),
        (lambda: reference_body(encode(two_faces())), 422, "several_faces"),
        (lambda: reference_body(encode(small_face())), 422, "face_too_small"),
        (
            lambda: reference_body(encode(blurred(photo("barack_obama/obama.jpg"), 8))),
            422,
            "face_blurry",
        ),
        (lambda: {**reference_body(b""), "photo": "not base64!"}, 422, "invalid_base64"),
        (lambda: reference_body(plain_jpeg(), "image/png"), 415, "unsupported_media_type"),
        (lambda: reference_body(plain_jpeg(), "application/pdf"), 415, "unsupported_media_type"),
        (lambda: reference_body(plain_jpeg()[:300]), 422, "image_unreadable"),
        (lambda: {"photo": b64(plain_jpeg()), "content_type": "image/jpeg"}, 422, "invalid_field"),
        (lambda: {**reference_body(plain_jpeg()), "extra": 1}, 422, "invalid_field"),
    ],
)
def test_enrolment_errors_have_precise_codes_and_write_nothing(api: Api, make, status, code):
    r = api.client.post("/v1/students/ll-1/reference-photos", json=make(), headers=api.auth())
    assert r.status_code == status, r.text
    assert error_code(r) == code
    with session_scope(api.url) as session:
        assert session.scalars(select(FaceReference)).all() == []
    assert api.queued() == []


def test_enrolment_of_an_unknown_student_or_an_oversized_photo(api: Api, configure: Configure):
    body = reference_body(photo_bytes("barack_obama/obama.jpg"))
    r = api.client.post("/v1/students/ll-404/reference-photos", json=body, headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_student")
    configure(max_attachment_bytes="100000")
    r = api.client.post("/v1/students/ll-1/reference-photos", json=body, headers=api.auth())
    assert (r.status_code, error_code(r)) == (413, "photo_too_large")


def test_erasing_references_really_deletes_them(api: Api):
    ids = []
    for name in ("barack_obama/obama.jpg", "barack_obama/obama2.jpg"):
        r = api.client.post(
            "/v1/students/ll-2/reference-photos",
            json=reference_body(photo_bytes(name)),
            headers=api.auth(),
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = api.client.delete(f"/v1/students/ll-2/reference-photos/{ids[0]}", headers=api.auth())
    assert r.status_code == 204
    listed = api.client.get("/v1/students/ll-2/reference-photos", headers=api.auth()).json()
    assert [ref["id"] for ref in listed["data"]] == [ids[1]]
    r = api.client.delete(f"/v1/students/ll-2/reference-photos/{ids[0]}", headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_reference")
    r = api.client.delete("/v1/students/ll-2/reference-photos?by=privacy", headers=api.auth())
    assert r.status_code == 204
    with session_scope(api.url) as session:
        assert session.scalars(select(FaceReference)).all() == []
        erased = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "reference.erased")
        ).all()
        assert [e.detail["reference_ids"] for e in erased] == [[ids[0]], [ids[1]]]
        assert erased[1].actor == "api:privacy"


def test_erasing_a_student(api: Api):
    r = api.client.post(
        "/v1/students/ll-1/reference-photos",
        json=reference_body(photo_bytes("joe_biden/biden.jpg")),
        headers=api.auth(),
    )
    assert r.status_code == 201
    assert api.client.delete("/v1/students/ll-1", headers=api.auth()).status_code == 204
    r = api.client.get("/v1/students/ll-1/consent", headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_student")
    r = api.client.delete("/v1/students/ll-1", headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_student")
    with session_scope(api.url) as session:
        assert session.scalars(select(FaceReference)).all() == []
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "student.erased")
        ).one()
        assert "Sanne" not in json.dumps(event.detail)
    # the other school's pupil with the same id is untouched
    r = api.client.get("/v1/students/ll-1/consent", headers=api.auth(api.key_b))
    assert r.status_code == 200


def test_withdrawing_consent_queues_a_recheck_once_per_child(api: Api):
    answer = {"student_id": "ll-1", "parent_id": "parent-1", "scope": "app", "granted": True}
    assert api.client.post("/v1/consent", json=answer, headers=api.auth()).status_code == 200
    assert api.queued() == []  # yes after yes
    no = {**answer, "granted": False}
    r = api.client.post("/v1/consent", json=no, headers=api.auth())
    assert r.status_code == 200 and "withdrawn" not in r.json()
    assert api.queued() == [
        (
            RECHECK_SCHOOL,
            [],
            {"school_id": "school-a", "student_id": "ll-1", "reason": "consent_withdrawn"},
        )
    ]
    assert api.client.post("/v1/consent", json=no, headers=api.auth()).status_code == 200
    assert len(api.queued()) == 1  # no after no: nothing new


# --- block list -------------------------------------------------------------------------


def test_block_list_add_list_delete(api: Api):
    image = photo("eileen_collins/astronaut.jpg")
    r = api.client.post(
        "/v1/image-blocklist",
        json={"photo": b64(encode(image)), "content_type": "image/jpeg", "note": "niet delen"},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["variants"] == 9 and len(entry["phash"]) == 16 and entry["note"] == "niet delen"
    r = api.client.post(
        "/v1/image-blocklist", json={"phash": "00FF00FF00FF00FF"}, headers=api.auth()
    )
    assert r.status_code == 201 and r.json()["phash"] == "00ff00ff00ff00ff"
    bare = r.json()
    listed = api.client.get("/v1/image-blocklist", headers=api.auth()).json()
    assert [e["id"] for e in listed["data"]] == [bare["id"], entry["id"]]
    assert api.client.get("/v1/image-blocklist", headers=api.auth(api.key_b)).json()["count"] == 0
    r = api.client.delete(f"/v1/image-blocklist/{entry['id']}", headers=api.auth())
    assert r.status_code == 204
    r = api.client.delete(f"/v1/image-blocklist/{entry['id']}", headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_entry")
    with session_scope(api.url) as session:
        assert len(session.scalars(select(ImageHash)).all()) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_field"),
        ({"phash": "0" * 16, "photo": "AAAA", "content_type": "image/jpeg"}, 422, "invalid_field"),
        ({"photo": "AAAA"}, 422, "invalid_field"),
        ({"phash": "xyz"}, 422, "invalid_hash"),
        ({"phash": "0x00ff00ff00ff00"}, 422, "invalid_hash"),
        ({"photo": "%%%", "content_type": "image/jpeg"}, 422, "invalid_base64"),
        ({"photo": b64(plain_jpeg()), "content_type": "image/jpeg"}, 422, "image_not_matchable"),
        ({"photo": b64(plain_jpeg()), "content_type": "image/gif"}, 415, "unsupported_media_type"),
        ({"phash": "0" * 16, "note": "x" * 501}, 422, "invalid_field"),
    ],
)
def test_block_list_errors(api: Api, body, status, code):
    r = api.client.post("/v1/image-blocklist", json=body, headers=api.auth())
    assert (r.status_code, error_code(r)) == (status, code), r.text


# --- removals, released copies, takedowns ------------------------------------------------


def test_removal_puts_the_released_photos_on_the_removed_list(api: Api):
    decided_post(api.url, "school-a", "p-rel", [photo_bytes("joe_biden/biden.jpg")])
    body = {"reason": "ouder vroeg erom", "by": "platform"}
    r = api.client.post("/v1/posts/p-rel/removal", json=body, headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.json() == {"post_id": "p-rel", "removed_hashes": 9}
    decided_post(
        api.url, "school-a", "p-held", [photo_bytes("joe_biden/biden.jpg")], action=Action.HOLD
    )
    r = api.client.post("/v1/posts/p-held/removal", json=body, headers=api.auth())
    assert (r.status_code, error_code(r)) == (409, "post_not_released")
    r = api.client.post("/v1/posts/p-404/removal", json=body, headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_post")
    r = api.client.post("/v1/posts/p-rel/removal", json={"reason": "x"}, headers=api.auth())
    assert (r.status_code, error_code(r)) == (422, "invalid_field")


def test_the_released_copy_is_served_only_while_released(api: Api):
    original = encode(cropped(photo("eileen_collins/astronaut.jpg"), left=0.2))
    decided_post(api.url, "school-a", "p-ok", [original])
    r = api.client.get("/v1/posts/p-ok/attachments/foto-0", headers=api.auth())
    assert r.status_code == 200
    assert r.content == original and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "private, no-store"
    r = api.client.get("/v1/posts/p-ok/attachments/foto-9", headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_attachment")
    decided_post(api.url, "school-a", "p-held", [original], action=Action.HOLD)
    r = api.client.get("/v1/posts/p-held/attachments/foto-0", headers=api.auth())
    assert (r.status_code, error_code(r)) == (409, "attachment_not_released")
    with session_scope(api.url) as session:  # retention purged the bytes
        post = get_post(session=session, school_id="school-a", post_id="p-ok")
        post.purged_at = utcnow()
        for att in post.attachments:
            att.data = att.released_data = None
    r = api.client.get("/v1/posts/p-ok/attachments/foto-0", headers=api.auth())
    assert (r.status_code, error_code(r)) == (410, "attachment_purged")


def _report(api: Api, post_pk: int, student: str = "ll-2") -> int:
    with session_scope(api.url) as session:
        return takedowns.report_takedown(
            session=session,
            school_id="school-a",
            post_pk=post_pk,
            attachment_id="foto-0",
            student_id=student,
            reason="consent_withdrawn",
        ).report.id


def test_takedowns_list_and_resolve(api: Api):
    post_pk = decided_post(api.url, "school-a", "p-td", [photo_bytes("barack_obama/obama3.jpg")])
    first, second = _report(api, post_pk), _report(api, post_pk, "ll-1")
    listed = api.client.get("/v1/takedowns?status=open", headers=api.auth()).json()
    assert [t["id"] for t in listed["data"]] == [first, second]
    assert listed["data"][0] | {"created_at": None} == {
        "id": first,
        "post_id": "p-td",
        "attachment_id": "foto-0",
        "student_id": "ll-2",
        "reason": "consent_withdrawn",
        "status": "open",
        "created_at": None,
        "resolved_at": None,
        "resolved_by": None,
    }
    r = api.client.post(
        f"/v1/takedowns/{first}/resolve", json={"by": "platform"}, headers=api.auth()
    )
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    r = api.client.post(
        f"/v1/takedowns/{first}/resolve", json={"by": "platform"}, headers=api.auth()
    )
    assert (r.status_code, error_code(r)) == (409, "already_resolved")
    assert [
        t["id"]
        for t in api.client.get("/v1/takedowns?status=open", headers=api.auth()).json()["data"]
    ] == [second]
    assert api.client.get("/v1/takedowns", headers=api.auth()).json()["count"] == 2
    r = api.client.get("/v1/takedowns?status=gone", headers=api.auth())
    assert (r.status_code, error_code(r)) == (422, "invalid_field")
    r = api.client.post("/v1/takedowns/99999/resolve", json={"by": "p"}, headers=api.auth())
    assert (r.status_code, error_code(r)) == (404, "unknown_takedown")


# --- tenant isolation ---------------------------------------------------------------------


def test_another_schools_key_gets_404_on_every_new_endpoint(api: Api):
    r = api.client.post(
        "/v1/students/ll-a/reference-photos",
        json=reference_body(photo_bytes("barack_obama/obama.jpg")),
        headers=api.auth(),
    )
    assert r.status_code == 201
    ref_id = r.json()["id"]
    entry = api.client.post(
        "/v1/image-blocklist", json={"phash": "0123456789abcdef"}, headers=api.auth()
    ).json()["id"]
    post_pk = decided_post(api.url, "school-a", "p-a", [photo_bytes("joe_biden/biden.jpg")])
    report = _report(api, post_pk)
    b = api.auth(api.key_b)
    body = reference_body(photo_bytes("barack_obama/obama.jpg"))
    attempts = [
        api.client.post("/v1/students/ll-a/reference-photos", json=body, headers=b),
        api.client.get("/v1/students/ll-a/reference-photos", headers=b),
        api.client.delete("/v1/students/ll-a/reference-photos", headers=b),
        api.client.delete(f"/v1/students/ll-a/reference-photos/{ref_id}", headers=b),
        api.client.delete(f"/v1/students/ll-1/reference-photos/{ref_id}", headers=b),
        api.client.delete("/v1/students/ll-a", headers=b),
        api.client.delete(f"/v1/image-blocklist/{entry}", headers=b),
        api.client.post("/v1/posts/p-a/removal", json={"by": "x"}, headers=b),
        api.client.get("/v1/posts/p-a/attachments/foto-0", headers=b),
        api.client.post(f"/v1/takedowns/{report}/resolve", json={"by": "x"}, headers=b),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts), [r.text for r in attempts]
    assert api.client.get("/v1/takedowns", headers=b).json() == {"data": [], "count": 0}
    assert api.client.get("/v1/image-blocklist", headers=b).json() == {"data": [], "count": 0}
    # and school A's data is all still there
    assert (
        api.client.get("/v1/students/ll-a/reference-photos", headers=api.auth()).json()["count"]
        == 1
    )
    assert api.client.get("/v1/image-blocklist", headers=api.auth()).json()["count"] == 1
    assert api.client.get("/v1/takedowns", headers=api.auth()).json()["count"] == 1


def test_new_endpoints_need_an_api_key(api: Api):
    for method, path in [
        ("get", "/v1/students/ll-1/reference-photos"),
        ("delete", "/v1/students/ll-1"),
        ("get", "/v1/image-blocklist"),
        ("get", "/v1/takedowns"),
        ("get", "/v1/posts/p/attachments/a"),
    ]:
        r = getattr(api.client, method)(path)
        assert (r.status_code, error_code(r)) == (401, "missing_api_key"), path


def test_a_recheck_that_cannot_be_queued_is_logged_not_raised(
    configure: Configure, caplog: pytest.LogCaptureFixture
):
    from moderation.config import get_settings
    from moderation.queue import enqueuer_for

    configure(broker_url="redis://127.0.0.1:1/0")  # nothing listens there
    enqueuer = enqueuer_for(get_settings())
    assert enqueuer.recheck("school-a", "ll-1", "consent_withdrawn") is False
    assert "was not queued" in caplog.text
    with pytest.raises(ValueError):
        enqueuer.recheck("school-a", "ll-1", "because")
