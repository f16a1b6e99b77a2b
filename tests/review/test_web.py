"""The review page: sign-in, the session cookie, CSRF, scope, escaping, actions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from moderation.api.main import create_app
from moderation.domain import Category
from moderation.review.tokens import sign_review_token
from moderation.storage.audit import SCHOOL_TZ
from moderation.storage.db import session_scope
from moderation.storage.tables import Attachment, Decision, Flag, Post
from tests.conftest import Configure
from tests.review.conftest import Env, review_secret, seed_post, token_for


def status_of(env: Env, post_id: str, school: str = "school-a") -> str:
    with session_scope(env.url) as session:
        return session.scalars(
            select(Post.status).where(Post.school_id == school, Post.external_id == post_id)
        ).one()


def decide(env: Env, **fields: str | list[str]) -> object:
    data = {"csrf": env.csrf(), **fields}
    return env.client.post("/review/decide", data=data, follow_redirects=False)


def test_sign_in_sets_a_hardened_session_cookie_and_drops_the_token(env: Env, configure: Configure):
    configure(review_cookie_secure="true")
    with TestClient(create_app()) as client:
        token = token_for(env.url, "school-a", "mw-1")
        r = client.get("/review/login", params={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("review_session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/review"):
        assert attribute.lower() in cookie.lower(), cookie
    assert token not in cookie


@pytest.mark.parametrize(
    "make",
    [
        lambda env: "garbage",
        lambda env: token_for(env.url, "school-a", "mw-1", secret="x" * 43),  # wrong secret
        lambda env: token_for(  # school A's claims under school B's secret
            env.url, "school-a", "mw-1", secret=review_secret(env.url, "school-b")
        ),
        lambda env: token_for(env.url, "school-a", "nobody"),  # not in the roster
        lambda env: token_for(env.url, "school-z", "mw-1", secret="z" * 43),  # no such school
        lambda env: sign_review_token(
            secret=review_secret(env.url, "school-a"),
            school_id="school-a",
            staff_id="mw-1",
            role="teacher",
            groups=["groep-5a"],
            name="x",
            ttl_s=60,
            now=datetime.now(UTC) - timedelta(minutes=10),
        ),  # expired
    ],
)
def test_bad_sign_in_tokens_get_no_session(env: Env, make):
    r = env.client.get("/review/login", params={"token": make(env)}, follow_redirects=False)
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    assert "Aanmelden lukte niet" in r.text
    assert env.client.get("/review").status_code == 401


def test_a_sign_in_link_works_once(env: Env):
    token = token_for(env.url, "school-a", "mw-1")
    first = env.client.get("/review/login", params={"token": token}, follow_redirects=False)
    assert first.status_code == 303
    again = env.client.get("/review/login", params={"token": token}, follow_redirects=False)
    assert again.status_code == 401


def test_the_queue_shows_only_the_teachers_groups_with_the_highlight(env: Env):
    seed_post(env.url, "school-a", "p-5a", "Wat ben jij een kankerjuf zeg")
    seed_post(
        env.url,
        "school-a",
        "p-6b",
        "Geheim uit 6b: tyfuslijer",
        word="tyfuslijer",
        group="groep-6b",
        author=("parent-3", "parent"),
    )
    seed_post(env.url, "school-b", "p-b", "Geheim van school B: kankerjuf")
    env.login("mw-1")
    page = env.client.get("/review")
    assert page.status_code == 200
    assert "<mark>kankerjuf</mark>" in page.text
    assert "Geheim" not in page.text and "tyfuslijer" not in page.text
    assert 'lang="nl"' in page.text and "Plaatsen" in page.text
    for header in ("content-security-policy", "x-frame-options", "referrer-policy"):
        assert header in page.headers
    assert page.headers["cache-control"] == "no-store"

    env.login("dir-1", role="admin", groups=())
    page = env.client.get("/review").text
    assert "<mark>kankerjuf</mark>" in page and "<mark>tyfuslijer</mark>" in page
    assert "school B" not in page


def test_groups_are_the_tokens_intersected_with_the_roster(env: Env):
    seed_post(env.url, "school-a", "p-5a")
    seed_post(
        env.url,
        "school-a",
        "p-6b",
        "Hoi tyfuslijer",
        word="tyfuslijer",
        group="groep-6b",
        author=("parent-3", "parent"),
    )
    env.login("mw-1", groups=("groep-5a", "groep-6b"))  # 6b is not hers in the roster
    page = env.client.get("/review").text
    assert "p-5a" in page and "p-6b" not in page
    env.login("mw-1", groups=())  # the platform may narrow
    assert "p-5a" not in env.client.get("/review").text
    env.login("mw-1", role="admin")  # ... but not raise: she is no admin in the roster
    page = env.client.get("/review").text
    assert "p-6b" not in page and "Directie" not in page
    env.login("dir-1", role="teacher", groups=())  # an admin the platform narrows
    assert "p-5a" not in env.client.get("/review").text

    env.login("mw-1")
    r = env.client.put(
        "/v1/staff",
        json={"id": "mw-1", "name": "Juf Anouk", "role": "teacher", "group_ids": []},
        headers=env.auth(),
    )
    assert r.status_code == 200
    assert "p-5a" not in env.client.get("/review").text  # the roster counts at once


def test_post_text_is_escaped(env: Env):
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> "kankerjuf" &amp;'
    seed_post(env.url, "school-a", "p1", hostile)
    env.login("mw-1")
    page = env.client.get("/review").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>kankerjuf</mark>" in page
    assert "&amp;amp;" in page


def test_release_from_the_page(env: Env):
    pk = seed_post(env.url, "school-a", "p1")
    env.login("mw-1")
    r = decide(env, do=f"release:{pk}")
    assert r.status_code == 303
    assert r.headers["location"].endswith("done=1")
    assert status_of(env, "p1") == "released"
    page = env.client.get(r.headers["location"]).text
    assert "1 bericht(en) afgehandeld." in page
    with session_scope(env.url) as session:
        flag = session.scalars(select(Flag).where(Flag.post_pk == pk)).one()
        assert (flag.status, flag.closed_by) == ("closed", "mw-1")
    history = env.client.get("/review/history").text
    assert 'data-action="review.release"' in history and 'data-post-id="p1"' in history


def test_reject_with_a_template_and_a_note(env: Env):
    pk = seed_post(env.url, "school-a", "p1")
    env.login("mw-1")
    r = decide(env, do=f"reject:{pk}", **{f"reason_code_{pk}": "", f"reason_text_{pk}": ""})
    assert "why=reason_required" in r.headers["location"]  # type: ignore[attr-defined]
    assert status_of(env, "p1") == "held"
    decide(
        env,
        do=f"reject:{pk}",
        **{f"reason_code_{pk}": "kindgesprek", f"reason_text_{pk}": "Groet, juf Anouk"},
    )
    assert status_of(env, "p1") == "rejected"
    with session_scope(env.url) as session:
        decision = session.scalars(
            select(Decision).where(Decision.post_pk == pk, Decision.sequence == 2)
        ).one()
    assert decision.reasons[0]["code"] == "review_kindgesprek"
    assert decision.reasons[0]["message_nl"].endswith("Groet, juf Anouk")


def test_bulk_actions_on_the_selection(env: Env):
    pks = [seed_post(env.url, "school-a", f"p{i}") for i in range(3)]
    env.login("mw-1")
    r = decide(env, do="bulk", post=[str(pks[0]), str(pks[2])], bulk_action="rephrase")
    assert "done=2" in r.headers["location"]  # type: ignore[attr-defined]
    assert [status_of(env, f"p{i}") for i in range(3)] == ["rejected", "held", "rejected"]
    r = decide(env, do="bulk", bulk_action="release")
    assert "why=nothing_selected" in r.headers["location"]  # type: ignore[attr-defined]


def test_csrf_and_origin_are_checked(env: Env):
    pk = seed_post(env.url, "school-a", "p1")
    env.login("mw-1")
    for data, headers in (
        ({"do": f"release:{pk}"}, {}),
        ({"do": f"release:{pk}", "csrf": "forged"}, {}),
        ({"do": f"release:{pk}", "csrf": env.csrf()}, {"Origin": "https://evil.example"}),
    ):
        r = env.client.post("/review/decide", data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403
    assert status_of(env, "p1") == "held"
    r = env.client.post("/review/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403


def test_no_acting_on_another_group_or_school_from_the_page(env: Env):
    other = seed_post(env.url, "school-a", "p6", group="groep-6b", author=("parent-3", "parent"))
    elsewhere = seed_post(env.url, "school-b", "pb")
    env.login("mw-1")
    for pk in (other, elsewhere):
        r = decide(env, do=f"release:{pk}")
        assert "why=unknown_post" in r.headers["location"]  # type: ignore[attr-defined]
    assert status_of(env, "p6") == "held"
    assert status_of(env, "pb", school="school-b") == "held"


def test_photos_are_served_only_in_scope(env: Env):
    own = seed_post(env.url, "school-a", "p1", photos=1)
    other = seed_post(
        env.url, "school-a", "p6", group="groep-6b", author=("parent-3", "parent"), photos=1
    )
    with session_scope(env.url) as session:
        att = {
            a.post_pk: a.pk
            for a in session.scalars(select(Attachment).where(Attachment.post_pk.in_([own, other])))
        }
    assert env.client.get(f"/review/attachments/{att[own]}").status_code == 401
    env.login("mw-1")
    page = env.client.get("/review").text
    assert f'src="/review/attachments/{att[own]}"' in page
    r = env.client.get(f"/review/attachments/{att[own]}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:2] == b"\xff\xd8"
    assert env.client.get(f"/review/attachments/{att[other]}").status_code == 404
    env.login("dir-1", school_id="school-b", role="admin", groups=())
    assert env.client.get(f"/review/attachments/{att[own]}").status_code == 404


def test_escalated_items_have_a_badge_and_filter(env: Env):
    seed_post(
        env.url,
        "school-a",
        "threat",
        "Ik maak je af",
        word="maak je af",
        category=Category.THREAT,
        score=0.6,
    )
    seed_post(env.url, "school-a", "calm")
    env.login("dir-1", role="admin", groups=())
    page = env.client.get("/review").text
    assert "Geëscaleerd · bedreiging" in page
    page = env.client.get("/review", params={"escalated": "1"}).text
    assert 'data-post-id="threat"' in page and 'data-post-id="calm"' not in page


def test_english_is_a_toggle_kept_in_the_session(env: Env):
    seed_post(env.url, "school-a", "p1")
    env.login("mw-1")
    assert 'lang="nl"' in env.client.get("/review").text
    page = env.client.get("/review", params={"lang": "en"}).text
    assert 'lang="en"' in page and "Release" in page
    assert 'lang="en"' in env.client.get("/review").text
    assert 'lang="nl"' in env.client.get("/review", params={"lang": "nl"}).text


def test_sign_out_ends_the_session_server_side(env: Env):
    env.login("mw-1")
    cookie = env.client.cookies.get("review_session")
    r = env.client.post("/review/logout", data={"csrf": env.csrf()}, follow_redirects=False)
    assert r.status_code == 200 and "afgemeld" in r.text
    env.client.cookies.set("review_session", cookie or "", path="/review")
    assert env.client.get("/review").status_code == 401


def test_audit_export_page_is_for_admins(env: Env):
    seed_post(env.url, "school-a", "p1")
    env.login("mw-1")
    assert env.client.get("/review/export").status_code == 404
    today = datetime.now(SCHOOL_TZ).date().isoformat()  # a date means a Dutch day
    assert (
        env.client.get("/review/audit.csv", params={"from": today, "to": today}).status_code == 404
    )
    env.login("dir-1", role="admin", groups=())
    assert 'action="/review/audit.csv"' in env.client.get("/review/export").text
    r = env.client.get("/review/audit.csv", params={"from": today, "to": today})
    assert r.status_code == 200 and "decision.hold" in r.text and "review.sign_in" in r.text
    assert re.search(r"admin:dir-1,review\.sign_in", r.text)


def test_static_files(env: Env):
    css = env.client.get("/review/static/review.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert env.client.get("/review/static/../config.py").status_code == 404
    assert env.client.get("/review/static/nothing.css").status_code == 404


def test_an_appeal_on_the_page_goes_to_a_colleague(env: Env):
    pk = seed_post(env.url, "school-a", "p1")
    body = {"action": "reject", "reviewer_id": "mw-1", "reason_code": "tone"}
    assert env.client.post("/v1/posts/p1/review", json=body, headers=env.auth()).status_code == 200
    appeal = {"author_id": "parent-1", "text": "<b>Het was een grap</b>"}
    r = env.client.post("/v1/posts/p1/appeals", json=appeal, headers=env.auth())
    assert r.status_code == 201
    env.login("mw-1")
    page = env.client.get("/review").text
    assert "Bezwaar van de afzender" in page and "&lt;b&gt;Het was een grap" in page
    r = decide(env, do=f"release:{pk}")
    location = r.headers["location"]  # type: ignore[attr-defined]
    assert "why=appeal_needs_other_reviewer" in location
    assert "een bezwaar beoordeelt een andere collega" in env.client.get(location).text
    env.login("mw-3")
    decide(env, do=f"release:{pk}")
    assert status_of(env, "p1") == "released"
