"""Hostile text through the real API on SQLite and PostgreSQL, then the text check.

Accepted posts are decided by ``workers.pipeline.run_text_check`` with the lexicon
scorer (the word lists; the trained model reads the same normalised text and is not
loaded here): a curse hidden with thousands of zero-width characters, look-alike
letters from other scripts or a right-to-left override is still found, with spans
inside the text as sent; harmless mixed scripts, emoji and combining marks are
released. Refused posts get their precise 4xx and leave no row behind, on both
databases: NUL characters and lone surrogates were 500s before (PostgreSQL cannot
store NUL; a lone surrogate has no UTF-8).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from sqlalchemy import select

from moderation.config import get_settings
from moderation.storage.db import session_scope
from moderation.storage.tables import Decision, Post
from tests.fuzz.conftest import Api
from tests.helpers import post_body
from workers import pipeline

ZW = "\u200b"  # zero-width space
RLO, PDF = "\u202e", "\u202c"  # right-to-left override, pop directional formatting
CURSE = "kankerjuf"


def decide_text(api: Api, post_id: str) -> tuple[str, list[dict[str, Any]], str]:
    """Run the text check on the stored post: (status, reasons of the decision, text)."""
    with session_scope(api.url) as session:
        post = session.scalars(
            select(Post).where(Post.school_id == api.tenant.school_id, Post.external_id == post_id)
        ).one()
        pk, text = post.pk, post.text
    pipeline.run_text_check(get_settings(), pk)
    pipeline.run_text_check(get_settings(), pk)  # a redelivered task changes nothing
    with session_scope(api.url) as session:
        decisions = session.scalars(select(Decision).where(Decision.post_pk == pk)).all()
        assert len(decisions) == 1
        post = session.get(Post, pk)
        assert post is not None
        return post.status, decisions[0].reasons, text


# --------------------------------------------------------------------------- accepted

HIDDEN_CURSES = {
    "zero-width between every letter, and 3000 more": (
        f"Wat een {ZW.join(CURSE)} is dat" + ZW * 3000,
        CURSE,
    ),
    "zero-width joiners and a BOM": ("Wat een " + "\u200d".join(CURSE) + "\ufeff", CURSE),
    "cyrillic and greek look-alikes": (
        "Wat een k\u0430nkerjuf, d\u03bfe normaal",
        "k\u0430nkerjuf",
    ),
    "right-to-left override": (f"Wat een {RLO}{CURSE[::-1]}{PDF} is dat", CURSE[::-1]),
    "whole text overridden": (f"{RLO}tad si {CURSE[::-1]} nee taW", CURSE[::-1]),
}


@pytest.mark.parametrize(("text", "marker"), list(HIDDEN_CURSES.values()), ids=list(HIDDEN_CURSES))
def test_hidden_curse_is_found_and_not_released(any_api: Api, text: str, marker: str):
    assert len(text) <= 10_000
    r = any_api.post(post_body("p1", text))
    assert r.status_code == 202, r.text
    status, reasons, stored = decide_text(any_api, "p1")
    assert stored == text  # stored exactly as sent
    assert status in ("held", "rejected")
    insult = next(reason for reason in reasons if reason["code"] == "text_insult")
    for start, end in insult["spans"]:
        assert 0 <= start < end <= len(text)
    covered = "".join(text[start:end] for start, end in insult["spans"])
    assert marker in "".join(ch for ch in covered if unicodedata.category(ch) != "Cf")


HARMLESS = {
    "mixed scripts": "Dank je wel juf! شكرا جزيلا 谢谢 спасибо 🙏",
    "hebrew paragraph with dutch words": "שלום juf, tot morgen bij de schoolreis",
    "override on a friendly word": f"Tot morgen {RLO}lewdnaw{PDF}!",
    "10,000 emoji": "😀" * 10_000,
    "combining marks flood": "Hoi" + "\u0301" * 5_000,
    "escaped surrogate pair (an emoji)": "Fijne dag \U0001f31e",
}


@pytest.mark.parametrize("text", list(HARMLESS.values()), ids=list(HARMLESS))
def test_harmless_unusual_text_is_accepted_and_released(any_api: Api, text: str):
    r = any_api.post(post_body("p1", text))
    assert r.status_code == 202, r.text
    status, reasons, stored = decide_text(any_api, "p1")
    assert stored == text
    assert (status, reasons) == ("released", [])


# --------------------------------------------------------------------------- refused


def raw_body(post_id: str, text_json: str, *, author_id: str = '"ouder-1"') -> bytes:
    """A post whose text (and author id) are given as JSON source, escapes and all."""
    return (
        f'{{"id": "{post_id}", "channel": {{"type": "group", "id": "groep-5a"}}, '
        f'"author": {{"id": {author_id}, "role": "parent"}}, "text": {text_json}}}'
    ).encode()


REFUSED: dict[str, tuple[bytes, int, str, str | None]] = {
    "lone high surrogate": (
        raw_body("p1", '"hallo \\ud800 daar"'),
        422,
        "invalid_field",
        "lone_surrogate",
    ),
    "lone low surrogate": (raw_body("p1", '"\\udc00"'), 422, "invalid_field", "lone_surrogate"),
    "lone surrogate in an id": (
        raw_body("p1", '"hoi"', author_id='"x\\udbff"'),
        422,
        "invalid_field",
        "lone_surrogate",
    ),
    "NUL in the text": (
        raw_body("p1", '"hallo \\u0000 daar"'),
        422,
        "invalid_field",
        "nul_character",
    ),
    "NUL in the post id": (raw_body("p\\u0000", '"hoi"'), 422, "invalid_field", "nul_character"),
    "only zero-width characters": (raw_body("p1", json.dumps(ZW * 5_000)), 422, "empty_post", None),
    "only an override and spaces": (
        raw_body("p1", json.dumps(f" {RLO}  {PDF}\n")),
        422,
        "empty_post",
        None,
    ),
    "1 MB of emoji": (
        raw_body("p1", json.dumps("🤬" * 262_144, ensure_ascii=False)),
        422,
        "text_too_long",
        None,
    ),
    "invalid UTF-8": (
        raw_body("p1", '"hallo \xff daar"').replace(b"\xc3\xbf", b"\xff"),
        400,
        "malformed_json",
        None,
    ),
}


@pytest.mark.parametrize(
    ("raw", "status", "code", "kind"), list(REFUSED.values()), ids=list(REFUSED)
)
def test_hostile_text_is_refused_precisely_and_writes_nothing(
    any_api: Api, raw: bytes, status: int, code: str, kind: str | None
):
    before = any_api.rows()
    r = any_api.post({}, raw=raw)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    if kind is not None:
        assert kind in [f["type"] for f in r.json()["error"]["details"]["fields"]]
    assert any_api.rows() == before == {"posts": 0, "attachments": 0, "events": 0}


def test_nul_in_a_path_or_query_is_refused_not_a_server_error(any_api: Api):
    headers = any_api.tenant.headers
    for path in ("/v1/posts/a%00b", "/v1/students/a%00b/consent", "/v1/policy?actor=a%00"):
        method = "PUT" if path.startswith("/v1/policy") else "GET"
        r = any_api.client.request(method, path, headers=headers, json={})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_field"), r.text
