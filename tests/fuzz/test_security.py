"""Tenant isolation on every route, no secret in any answer, no post content in the logs.

**Isolation.** The routes come from the app (``iter_route_contexts``), so a route added
later is tested too. Every route with a path parameter naming school data (a post, a
student, an attachment, a reference, a takedown, a block-list entry) is called twice
on a fresh copy of one database: with school B's credentials on school A's object
(must be 403 or 404, and nothing of A's in the answer), then with A's own (must *not*
be 401, 403 or 404, which proves the request reached the object, so B's 404 means
something). ``/v1`` routes use API keys; ``/review`` routes the signed-in admins of the
two schools, and a teacher of another group of school A (group isolation). A route
whose parameter the test does not know fails and says what to add. Ids in bodies and
queries (channels, tagged pupils, roster links, queue filters) have their own cases.

**Secrets.** No answer, in the isolation runs, a walk over every readable page and API
answer, or the fuzz run (``test_schema.py``), contains a school's API key, its stored
hash, its webhook secret or its review secret.

**Logs.** A post with a unique marker in its text and in its photo's bytes goes through
intake, refused look-alikes, the text and media checks, the decision callback (failed
and delivered), the review API and the sweeper, with every logger captured at INFO:
neither marker, nor the photo's base64, appears in any record.
"""

from __future__ import annotations

import base64
import io
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, update

from moderation.api.main import create_app
from moderation.config import get_settings
from moderation.domain import Action
from moderation.storage import image_hashes, references, takedowns
from moderation.storage.db import dispose_engine, session_scope
from moderation.storage.migrate import upgrade
from moderation.storage.review_sessions import COOKIE_NAME
from moderation.storage.tables import Attachment, Callback, Decision, Post
from tests.conftest import Configure
from tests.fuzz.conftest import (
    A_EXTRA,
    A_ONLY_GROUP,
    A_ONLY_NAME,
    A_ONLY_STUDENT,
    Tenant,
    answer_text,
    leaked_secrets,
    make_tenant,
)
from tests.helpers import CallbackReceiver, jpeg_bytes, post_body
from tests.review.conftest import seed_post, token_for
from workers import callbacks, pipeline

A_MARKER = "geheim-van-school-A"  # in A's post text: never in an answer to B

APP = create_app()  # for the list of routes only; each test makes its own app
ROUTES = sorted(
    (method, route.path)
    for route in iter_route_contexts(APP.routes)
    if route.path and route.methods
    for method in route.methods - {"HEAD"}
)


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    """Schools A and B in a template database, and the ids of A's objects."""

    template: Path
    a: Tenant
    b: Tenant
    post_id: str
    attachment_id: str
    attachment_pk: int
    reference_id: int
    takedown_id: int
    entry_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Built once; every test runs on its own copy of the file."""
    template = tmp_path_factory.mktemp("isolation") / "template.sqlite"
    url = f"sqlite:///{template}"
    upgrade(url)
    a = make_tenant(url, "school-a", extra=A_EXTRA)
    b = make_tenant(url, "school-b")
    pk = seed_post(
        url, "school-a", "p-a", f"{A_MARKER}: wat een kankerjuf", action=Action.RELEASE, photos=1
    )
    with session_scope(url) as session:
        session.execute(
            update(Attachment).where(Attachment.post_pk == pk).values(released_data=jpeg_bytes())
        )
        attachment = session.scalars(select(Attachment).where(Attachment.post_pk == pk)).one()
        reference = references.enrol_reference(
            session=session,
            school_id="school-a",
            student_id=A_ONLY_STUDENT,
            embedding=[0.0] * 128,
            model="test",
            enrolled_by="test",
            source="api",
        )
        takedown = takedowns.report_takedown(
            session=session,
            school_id="school-a",
            post_pk=pk,
            attachment_id=attachment.external_id,
            student_id=A_ONLY_STUDENT,
            reason="consent_withdrawn",
        )
        entry = image_hashes.block_image(
            session=session,
            school_id="school-a",
            hashes=["8f3c8f3c8f3c8f3c"],
            note="test",
            added_by="test",
        )
        ids = (attachment.external_id, attachment.pk, reference.id, takedown.report.id, entry.entry)
    dispose_engine(url)  # closes the WAL into the file before it is copied
    yield World(template, a, b, "p-a", *ids)


@dataclass
class Site:
    """One copy of the world, its app and the ways to call it."""

    world: World
    url: str
    client: TestClient

    def cookie_for(self, school_id: str, staff_id: str, role: str, groups: tuple[str, ...]) -> str:
        """Sign a staff member in on the review page; the session cookie's value."""
        self.client.cookies.clear()
        token = token_for(self.url, school_id, staff_id, role=role, groups=groups)
        r = self.client.get("/review/login", params={"token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        value = self.client.cookies.get("review_session") or next(
            iter(self.client.cookies.values())
        )
        self.client.cookies.clear()
        return value


@pytest.fixture
def site(world: World, tmp_path: Path, configure: Configure) -> Iterator[Site]:
    copy = tmp_path / "moderation.sqlite"
    shutil.copyfile(world.template, copy)
    url = f"sqlite:///{copy}"
    configure(
        database_url=url, rate_limit="100000/minute", review_cookie_secure="false", max_wait_s="0"
    )
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield Site(world, url, client)
    dispose_engine(url)


# --------------------------------------------------------------------------- requests

# Which of school A's objects a path parameter names; a new parameter fails the test.
PATH_VALUES: dict[str, Callable[[World], object]] = {
    "post_id": lambda w: w.post_id,
    "student_id": lambda w: A_ONLY_STUDENT,
    "group_id": lambda w: A_ONLY_GROUP,
    "attachment_id": lambda w: w.attachment_id,
    "attachment_pk": lambda w: w.attachment_pk,
    "reference_id": lambda w: w.reference_id,
    "takedown_id": lambda w: w.takedown_id,
    "entry_id": lambda w: w.entry_id,
}
NOT_SCHOOL_DATA = {"name"}  # /review/static/{name}: the page's CSS and JavaScript

# Values for body and query fields that mean the same person in both schools, so that
# a request is valid in either and only the object in the path differs.
FIELD_VALUES: dict[str, object] = {
    "reviewer_id": "dir-1",
    "reporter_id": "parent-3",
    "reporter_role": "parent",
    "author_id": "parent-1",
    "action": "release",
    "photo": "!!",  # not base64: refused before any face model would load
    "content_type": "image/jpeg",
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def minimal(spec: dict[str, Any], schema: dict[str, Any], name: str = "") -> object:
    """The smallest instance of a JSON schema, known fields filled from FIELD_VALUES."""
    if name in FIELD_VALUES:
        return FIELD_VALUES[name]
    schema = _resolve(spec, schema)
    for options in ("anyOf", "oneOf", "allOf"):
        if options in schema:
            branch = next(s for s in schema[options] if _resolve(spec, s).get("type") != "null")
            return minimal(spec, branch, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {
            key: minimal(spec, sub, key)
            for key, sub in schema.get("properties", {}).items()
            if key in schema.get("required", [])
        }
    if kind == "array":
        return [minimal(spec, schema["items"], name)] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return "x" * max(1, schema.get("minLength", 1))


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, object]
    body: object | None


def call_for(site: Site, method: str, template: str) -> Call:
    """The request for a route on school A's objects, with a minimal valid body."""
    route = next(
        r for r in iter_route_contexts(APP.routes) if r.path == template and method in r.methods
    )
    params = list(route.param_convertors)
    unknown = [p for p in params if p not in PATH_VALUES and p not in NOT_SCHOOL_DATA]
    assert not unknown, (
        f"{method} {template} takes {unknown}: add to PATH_VALUES in {__file__} which of "
        "school A's objects it names, so that its tenant isolation is tested"
    )
    path = template
    for name in params:
        if name in PATH_VALUES:
            path = path.replace("{" + name + "}", str(PATH_VALUES[name](site.world)))
    spec = site.client.app.openapi()  # type: ignore[attr-defined]
    operation = spec["paths"].get(template, {}).get(method.lower(), {})
    query = {
        p["name"]: minimal(spec, p.get("schema", {}), p["name"])
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    body = None
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        body = minimal(spec, content["schema"])
    return Call(method, path, query, body)


def send(site: Site, call: Call, *, key: str | None = None, cookie: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    site.client.cookies.clear()
    if cookie:
        site.client.cookies.set(COOKIE_NAME, cookie)
    try:
        return site.client.request(
            call.method,
            call.path,
            params=call.query,  # type: ignore[arg-type]
            json=call.body,
            headers=headers,
        )
    finally:
        site.client.cookies.clear()


def school_data_routes() -> list[Any]:
    return [
        pytest.param(method, path, id=f"{method} {path}")
        for method, path in ROUTES
        if "{" in path and not set(_path_params(path)) <= NOT_SCHOOL_DATA
    ]


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


# --------------------------------------------------------------------------- isolation


@pytest.mark.parametrize(("method", "template"), school_data_routes())
def test_another_school_never_reaches_school_a_s_objects(site: Site, method: str, template: str):
    call = call_for(site, method, template)
    world = site.world
    answers: list[Any] = []
    if template.startswith("/review"):
        other_school = site.cookie_for("school-b", "dir-1", "admin", ())
        other_group = site.cookie_for("school-a", "mw-2", "teacher", ("groep-6b",))
        own = site.cookie_for("school-a", "dir-1", "admin", ())
        for who, cookie in (("school B's admin", other_school), ("a 6b teacher", other_group)):
            r = send(site, call, cookie=cookie)
            answers.append(r)
            assert r.status_code in (403, 404), f"{who}: {r.status_code} {r.text[:300]}"
        mine = send(site, call, cookie=own)
    else:
        r = send(site, call, key=world.b.api_key)
        answers.append(r)
        assert r.status_code in (403, 404), f"school B: {r.status_code} {r.text[:300]}"
        if isinstance(call.body, dict) and "reviewer_id" in call.body:
            other_group = Call(
                call.method, call.path, call.query, {**call.body, "reviewer_id": "mw-2"}
            )
            r = send(site, other_group, key=world.a.api_key)
            answers.append(r)
            assert r.status_code in (403, 404), f"a 6b teacher: {r.status_code} {r.text[:300]}"
        mine = send(site, call, key=world.a.api_key)
    for r in answers:
        text = answer_text(r)
        assert A_MARKER not in text and A_ONLY_NAME not in text
    answers.append(mine)
    assert mine.status_code not in (401, 403, 404), (
        f"school A's own call was {mine.status_code} {mine.text[:300]}: the test does not "
        "reach the object, so school B's refusal proves nothing; fix the call (FIELD_VALUES)"
    )
    assert not any(leaked_secrets(answer_text(r), [world.a, world.b]) for r in answers)


def test_every_route_is_either_checked_or_names_no_school_data():
    checked = {(p.values[0], p.values[1]) for p in school_data_routes()}
    with_params = {(m, p) for m, p in ROUTES if "{" in p}
    skipped = with_params - checked
    assert all(set(_path_params(p)) <= NOT_SCHOOL_DATA for _, p in skipped)
    assert len(checked) >= 10  # posts, students, attachments, references, takedowns, ...


BODY_REFERENCES = [
    ("POST", "/v1/posts", post_body("x1", "hoi", channel={"type": "group", "id": A_ONLY_GROUP})),
    (
        "POST",
        "/v1/posts",
        post_body("x2", "hoi", channel={"type": "kindgesprek", "id": A_ONLY_STUDENT}),
    ),
    ("POST", "/v1/posts", post_body("x3", "hoi", tagged_students=[A_ONLY_STUDENT])),
    (
        "POST",
        "/v1/consent",
        {"student_id": A_ONLY_STUDENT, "parent_id": "parent-1", "scope": "app", "granted": False},
    ),
    ("PUT", "/v1/parents", {"id": "parent-9", "name": "X", "student_ids": [A_ONLY_STUDENT]}),
    ("PUT", "/v1/students", {"id": "ll-9", "name": "X", "group_id": A_ONLY_GROUP}),
    ("PUT", "/v1/staff", {"id": "mw-9", "name": "X", "group_ids": [A_ONLY_GROUP]}),
    ("POST", "/v1/roster", {"students": [{"id": "ll-9", "name": "X", "group_id": A_ONLY_GROUP}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), BODY_REFERENCES)
def test_ids_in_bodies_name_only_the_own_school_s_objects(
    site: Site, method: str, path: str, body: dict[str, Any]
):
    world = site.world
    theirs = site.client.request(method, path, json=body, headers=world.b.headers)
    assert theirs.status_code in (404, 422), theirs.text
    assert theirs.json()["error"]["code"].startswith("unknown_")
    assert A_ONLY_NAME not in theirs.text
    mine = site.client.request(method, path, json=body, headers=world.a.headers)
    assert mine.status_code in (200, 201, 202), mine.text


def test_a_queue_filter_on_another_school_s_group_shows_nothing(site: Site):
    query = {"reviewer_id": "dir-1", "group": A_ONLY_GROUP}
    theirs = site.client.get("/v1/review/queue", params=query, headers=site.world.b.headers)
    assert (theirs.status_code, theirs.json()["count"]) == (200, 0)


# --------------------------------------------------------------------------- secrets


def test_no_answer_carries_a_secret(site: Site):
    """Every readable page and API answer of both schools, after some normal use."""
    world = site.world
    a, b = world.a.headers, world.b.headers
    answers = [
        site.client.post("/v1/posts", json=post_body("n1", "Wat een kankerjuf"), headers=a),
        site.client.post("/v1/posts", json=post_body("n1", "Dubbel?"), headers=a),  # conflict
        site.client.post("/v1/posts", json=post_body("n2", "x" * 20_000), headers=a),
        site.client.get("/v1/posts/p-a", headers=a),
        site.client.get("/v1/posts/p-a", headers=b),
        site.client.get("/v1/posts/p-a", headers={"Authorization": "Bearer msk_wrong"}),
        site.client.get("/v1/posts/p-a"),
        site.client.get("/v1/policy", headers=a),
        site.client.put("/v1/policy", json={"retention_days": 0}, headers=a),
        site.client.get(f"/v1/students/{A_ONLY_STUDENT}/consent", headers=a),
        site.client.get("/v1/review/queue", params={"reviewer_id": "dir-1"}, headers=a),
        site.client.get(
            "/v1/audit.csv", params={"from": "2020-01-01", "to": "2020-12-31"}, headers=a
        ),
        site.client.get("/openapi.json"),
        site.client.get("/docs"),
        site.client.get("/healthz"),
    ]
    today = {"from": "2025-01-01", "to": "2025-12-31"}
    for method, path in ROUTES:  # every other GET without parameters, with A's key
        if method == "GET" and "{" not in path and path.startswith("/v1"):
            answers.append(
                site.client.get(path, params={**today, "reviewer_id": "dir-1"}, headers=a)
            )
    for school_id in ("school-a", "school-b"):
        cookie = site.cookie_for(school_id, "dir-1", "admin", ())
        site.client.cookies.set(COOKIE_NAME, cookie)
        for page in ("/review", "/review/history", "/review/export", "/review?lang=en"):
            answers.append(site.client.get(page))
        answers.append(site.client.get("/review/audit.csv", params=today))
        site.client.cookies.clear()
    assert all(r.status_code < 500 for r in answers), [r.status_code for r in answers]
    leaks = [
        (r.request.method, str(r.request.url), leaked_secrets(answer_text(r), [world.a, world.b]))
        for r in answers
    ]
    assert [leak for leak in leaks if leak[2]] == []


def test_the_secret_scan_finds_a_secret(site: Site):
    """The scan itself works: a secret in an answer is found, by name."""
    world = site.world
    fake = type(
        "Answer", (), {"headers": {"x-debug": world.a.secrets["webhook_secret"]}, "content": b"{}"}
    )()
    assert leaked_secrets(answer_text(fake), [world.a, world.b]) == ["school-a.webhook_secret"]


# --------------------------------------------------------------------------- logs


def marked_jpeg(marker: bytes) -> bytes:
    """A real photo whose bytes carry the marker (in a JPEG comment segment)."""
    out = io.BytesIO()
    Image.new("RGB", (48, 32), "navy").save(out, "JPEG", comment=marker)
    data = out.getvalue()
    assert marker in data
    return data


def test_no_post_text_or_image_bytes_in_the_logs_at_info(
    site: Site, caplog: pytest.LogCaptureFixture, configure: Configure
):
    configure(text_scorer="lexicon")
    receiver = CallbackReceiver(fail_first=1)
    text_marker = "tekstmerk-7f3a9c"
    image_marker = b"beeldmerk-51d2e8"
    photo = marked_jpeg(image_marker)
    photo_b64 = base64.b64encode(photo).decode()
    a = site.world.a.headers
    caplog.set_level(logging.INFO)  # the root logger and every logger below it
    try:
        body = post_body(
            "log-1",
            f"Bel me op 06-12345678 over {text_marker}",  # a phone number: held
            attachments=[{"id": "foto-1", "content_type": "image/jpeg", "data": photo_b64}],
            callback_url=receiver.url,
        )
        assert site.client.post("/v1/posts", json=body, headers=a).status_code == 202
        # refused look-alikes: the same marker in every field that can be refused
        for bad in (
            {**body, "id": "log-2", "text": text_marker * 2_000},
            {**body, "id": "log-3", "attachments": [{**body["attachments"][0], "data": "!"}]},
            {
                **body,
                "id": "log-4",
                "attachments": [{**body["attachments"][0], "content_type": "image/png"}],
            },
            {**body, "id": "log-5", "text": f"{text_marker}\u0000"},
            {**body, "text": "anders"},  # same id, other body: a conflict
        ):
            assert 400 <= site.client.post("/v1/posts", json=bad, headers=a).status_code < 500
        with session_scope(site.url) as session:
            pk = session.scalars(select(Post.pk).where(Post.external_id == "log-1")).one()
        settings = get_settings()
        pipeline.run_text_check(settings, pk)
        pipeline.run_media_check(settings, pk)
        with session_scope(site.url) as session:
            callback_pk = session.scalars(select(Callback.pk).where(Callback.post_pk == pk)).one()
        assert callbacks.deliver(settings, callback_pk) is callbacks.Delivery.RETRY
        assert callbacks.deliver(settings, callback_pk) is callbacks.Delivery.DELIVERED
        review = {"action": "reject", "reviewer_id": "dir-1", "reason_code": "tone"}
        r = site.client.post("/v1/posts/log-1/review", json=review, headers=a)
        assert r.status_code == 200, r.text
        pipeline.sweep(settings)
    finally:
        receiver.close()
    with session_scope(site.url) as session:
        assert (
            session.scalar(select(func.count()).select_from(Decision).where(Decision.post_pk == pk))
            >= 1
        )
    records = [rec for rec in caplog.records if rec.levelno >= logging.INFO]
    assert records, "nothing was logged: the capture is not working"
    for rec in records:
        logged = rec.getMessage() + (rec.exc_text or "") + repr(rec.args)
        assert text_marker not in logged, rec.getMessage()
        assert image_marker.decode() not in logged, rec.getMessage()
        assert photo_b64[40:80] not in logged, rec.getMessage()
        assert "06-12345678" not in logged, rec.getMessage()
