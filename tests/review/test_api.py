"""The review API: queue, decisions, reports, appeals and the audit export, each scoped to
the acting staff member's groups and to the API key's school."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from sqlalchemy import select

from moderation.domain import Action, Category
from moderation.storage.audit import SCHOOL_TZ
from moderation.storage.db import session_scope
from moderation.storage.review import escalate_due
from moderation.storage.tables import Callback, Post
from tests.helpers import post_body
from tests.review.conftest import Env, seed_post


def review(env: Env, post_id: str, key: str | None = None, **body: object):
    return env.client.post(f"/v1/posts/{post_id}/review", json=body, headers=env.auth(key))


def queue_ids(env: Env, reviewer_id: str, key: str | None = None, **params: str) -> list[str]:
    r = env.client.get(
        "/v1/review/queue", params={"reviewer_id": reviewer_id, **params}, headers=env.auth(key)
    )
    assert r.status_code == 200, r.text
    return [item["post_id"] for item in r.json()["data"]]


def test_queue_is_scoped_to_the_reviewers_groups_and_school(env: Env):
    seed_post(env.url, "school-a", "a-5a")
    seed_post(env.url, "school-a", "a-6b", group="groep-6b", author=("parent-3", "parent"))
    seed_post(env.url, "school-b", "b-5a")
    assert queue_ids(env, "mw-1") == ["a-5a"]
    assert queue_ids(env, "mw-2") == ["a-6b"]
    assert queue_ids(env, "dir-1") == ["a-5a", "a-6b"]
    assert queue_ids(env, "dir-1", key=env.key_b) == ["b-5a"]
    assert queue_ids(env, "mw-1", group="groep-6b") == []
    r = env.client.get("/v1/review/queue", params={"reviewer_id": "x"}, headers=env.auth())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_reviewer")
    [item] = env.client.get(
        "/v1/review/queue", params={"reviewer_id": "mw-1"}, headers=env.auth()
    ).json()["data"]
    assert item["text"][item["highlights"][0][0] : item["highlights"][0][1]] == "kankerjuf"
    assert item["scores"] == {"insult": 0.7}
    assert item["author"] == {"id": "parent-1", "role": "parent", "name": "Eva de Vries"}


def test_a_decision_by_api_closes_the_flag_and_queues_the_callback(env: Env):
    pk = seed_post(env.url, "school-a", "p1")
    r = review(env, "p1", action="release", reviewer_id="mw-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["sequence"], body["post"]["status"], body["blur"]) == (2, "released", False)
    assert body["post"]["decision"]["decided_by"] == "mw-1"
    post = env.client.get("/v1/posts/p1", headers=env.auth()).json()
    assert post["status"] == "released" and post["decision"]["action"] == "release"
    with session_scope(env.url) as session:
        keys = session.scalars(select(Callback.idempotency_key).where(Callback.post_pk == pk))
        assert sorted(keys) == ["school-a:p1:decision:1", "school-a:p1:decision:2"]

    again = review(env, "p1", action="reject", reviewer_id="mw-3", reason_code="tone")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_decided")


def test_no_acting_outside_the_groups_or_the_school(env: Env):
    seed_post(env.url, "school-a", "p1")
    seed_post(env.url, "school-a", "p6", group="groep-6b", author=("parent-3", "parent"))
    for key, post_id, reviewer in (
        (None, "p1", "mw-2"),  # a teacher of another group
        (None, "p6", "mw-1"),
        (env.key_b, "p1", "mw-1"),  # another school's key, a same-named teacher there
        (env.key_b, "p1", "dir-1"),  # even its admin
    ):
        r = review(env, post_id, key=key, action="release", reviewer_id=reviewer)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_post"), reviewer
    with session_scope(env.url) as session:
        statuses = session.scalars(
            select(Post.status).where(Post.school_id == "school-a").order_by(Post.external_id)
        ).all()
        assert statuses == ["held", "held"]
    assert review(env, "p6", action="release", reviewer_id="dir-1").status_code == 200


def test_bad_review_requests(env: Env):
    seed_post(env.url, "school-a", "p1")
    r = review(env, "p1", action="reject", reviewer_id="mw-1")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "reason_required")
    r = review(env, "p1", action="delete", reviewer_id="mw-1")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_field")
    r = review(env, "nope", action="release", reviewer_id="mw-1")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_post")
    r = env.client.post("/v1/posts/p1/review", json={"action": "release", "reviewer_id": "mw-1"})
    assert r.status_code == 401
    r = review(env, "p1", action="rephrase", reviewer_id="mw-1", reason="Iets vriendelijker?")
    assert r.status_code == 200
    assert r.json()["post"]["decision"]["reasons"][0]["code"] == "review_rephrase"


def test_release_with_blur_marks_every_attachment(env: Env):
    seed_post(env.url, "school-a", "p1", photos=2)
    r = review(env, "p1", action="release_blur", reviewer_id="mw-1")
    assert r.status_code == 200 and r.json()["blur"] is True
    with session_scope(env.url) as session:
        payload = session.scalars(
            select(Callback.payload).where(Callback.idempotency_key.like("%:p1:decision:2"))
        ).one()
    assert [a["blur"] for a in payload["decision"]["attachments"]] == [True, True]


def test_reports_enter_the_queue_and_the_post_stays_released(env: Env):
    seed_post(env.url, "school-a", "p1", "Leuk uitje!", word=None, action=Action.RELEASE)
    body = {"reporter_id": "parent-3", "reporter_role": "parent", "reason": "Mijn kind staat erop"}
    r = env.client.post("/v1/posts/p1/reports", json=body, headers=env.auth())
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["kind"], first["reason"], first["status"], first["reports"]) == (
        "report",
        "reported",
        "open",
        1,
    )
    r = env.client.post("/v1/posts/p1/reports", json=body, headers=env.auth())
    assert (r.json()["id"], r.json()["reports"]) == (first["id"], 2)
    assert env.client.get("/v1/posts/p1", headers=env.auth()).json()["status"] == "released"
    assert queue_ids(env, "mw-1", kind="report") == ["p1"]
    r = env.client.post("/v1/posts/p1/reports", json=body, headers=env.auth(env.key_b))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_post")

    env.client.post("/v1/posts", json=post_body("pending"), headers=env.auth())
    r = env.client.post("/v1/posts/pending/reports", json=body, headers=env.auth())
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_released")
    stranger = {**body, "reporter_id": "nobody"}
    r = env.client.post("/v1/posts/p1/reports", json=stranger, headers=env.auth())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_reporter")


def test_appeals_go_to_another_reviewer(env: Env):
    seed_post(env.url, "school-a", "p1")
    assert review(env, "p1", action="reject", reviewer_id="mw-1", reason_code="tone").status_code
    wrong = {"author_id": "parent-3", "text": "Dit klopt niet"}
    r = env.client.post("/v1/posts/p1/appeals", json=wrong, headers=env.auth())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "not_the_author")
    right = {"author_id": "parent-1", "text": "Het was een citaat uit een boek."}
    r = env.client.post("/v1/posts/p1/appeals", json=right, headers=env.auth())
    assert r.status_code == 201 and r.json()["kind"] == "appeal"
    r = env.client.post("/v1/posts/p1/appeals", json=right, headers=env.auth())
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_appealed")
    assert queue_ids(env, "mw-3", kind="appeal") == ["p1"]
    r = review(env, "p1", action="release", reviewer_id="mw-1")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "appeal_needs_other_reviewer")
    r = review(env, "p1", action="release", reviewer_id="mw-3")
    assert r.status_code == 200 and r.json()["sequence"] == 3


def test_audit_csv_per_school_and_period(env: Env):
    seed_post(env.url, "school-a", "p1")
    seed_post(env.url, "school-b", "only-in-b")
    review(env, "p1", action="release", reviewer_id="mw-1")
    today = datetime.now(SCHOOL_TZ).date().isoformat()  # a date means a Dutch day
    r = env.client.get("/v1/audit.csv", params={"from": today, "to": today}, headers=env.auth())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["actor"], row["action"]) for row in rows if row["post_id"] == "p1"] == [
        ("parent:parent-1", "post.received"),
        ("auto", "decision.hold"),
        ("teacher:mw-1", "review.release"),
    ]
    assert "only-in-b" not in r.text
    r = env.client.get(
        "/v1/audit.csv", params={"from": "2020-01-01", "to": "2020-01-02"}, headers=env.auth()
    )
    assert r.text.count("\n") == 1  # the header only
    r = env.client.get("/v1/audit.csv", params={"from": "x", "to": today}, headers=env.auth())
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_period")
    assert env.client.get("/v1/audit.csv", params={"from": today, "to": today}).status_code == 401


def test_threats_are_escalated_in_the_queue(env: Env):
    seed_post(
        env.url,
        "school-a",
        "threat",
        "Ik maak je af",
        word="maak je af",
        category=Category.THREAT,
        score=0.6,
    )
    [item] = env.client.get(
        "/v1/review/queue",
        params={"reviewer_id": "dir-1", "escalated": "true"},
        headers=env.auth(),
    ).json()["data"]
    assert item["escalation"] == "threat"


def test_openapi_lists_the_review_api_but_not_the_pages(env: Env):
    paths = env.client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/review/queue",
        "/v1/posts/{post_id}/review",
        "/v1/posts/{post_id}/reports",
        "/v1/posts/{post_id}/appeals",
        "/v1/audit.csv",
    ):
        assert path in paths
    assert not [p for p in paths if p.startswith("/review")]


def test_escalated_items_go_to_the_policys_escalation_roles(env: Env):
    """A care coordinator (role staff, no group) handles escalations once the school's
    policy names the role; before that, and for items not escalated, they see nothing."""
    r = env.client.put(
        "/v1/staff", json={"id": "ib-1", "name": "IB'er Ine", "role": "staff"}, headers=env.auth()
    )
    assert r.status_code == 200, r.text
    seed_post(
        env.url,
        "school-a",
        "threat-1",
        "Pas maar op, ik weet waar je woont",
        word="ik weet waar je woont",
        category=Category.THREAT,
        score=0.9,
    )
    seed_post(env.url, "school-a", "plain-1")
    with session_scope(env.url) as session:
        escalate_due(session)
    assert queue_ids(env, "ib-1") == []  # the house policy escalates to admins only
    policy = {"escalation": {"roles": ["admin", "staff"]}}
    assert env.client.put("/v1/policy", json=policy, headers=env.auth()).status_code == 200
    assert queue_ids(env, "ib-1") == ["threat-1"]
    assert review(env, "plain-1", action="release", reviewer_id="ib-1").status_code == 404
    r = review(env, "threat-1", action="reject", reviewer_id="ib-1", reason_code="tone")
    assert r.status_code == 200, r.text
