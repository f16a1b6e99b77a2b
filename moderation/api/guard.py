"""Refuse characters that no database stores, before any route runs.

Two characters pass JSON parsing and Pydantic's ``str`` but not storage:

* **U+0000 (NUL)**: PostgreSQL ``text`` cannot hold it. A post, an id or a query value
  with one was a 500 on PostgreSQL (``DataError``) and accepted on SQLite, so the same
  request behaved differently on the two supported databases.
* **A lone surrogate** (JSON ``"\\ud800"`` without its pair): Python's JSON parser keeps
  it, but it has no UTF-8 encoding, so hashing or storing the body raised
  ``UnicodeEncodeError`` (a 500) on both databases. A URL cannot carry one: Starlette
  decodes the path and query with replacement characters.

:func:`refuse_unstorable_text` is an application-wide dependency, so every route,
including routes added later, gets the check. It answers 422 ``invalid_field`` with the
failing fields in the same shape as any other field error, and nothing is written.
Other control characters are stored as sent: they are legal text, and the scorers and
the review page (autoescaped) handle them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Request

from moderation.errors import InvalidInput

_NUL = "\x00"
MAX_REPORTED = 20  # fields listed in one error answer


def _problem(value: str) -> tuple[str, str] | None:
    if _NUL in value:  # memchr: fast on a 13 MB base64 attachment too
        return "contains a NUL character (U+0000)", "nul_character"
    if not value.isascii() and not _encodes(value):  # isascii() is a flag, O(1)
        return "contains a lone UTF-16 surrogate (not valid Unicode)", "lone_surrogate"
    return None


def _encodes(value: str) -> bool:
    """Whether the text has a UTF-8 encoding; after json.loads a surrogate pair is one
    character, so only a lone surrogate fails."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """(path, problem, type) for every bad string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        found = _problem(value)
        if found is not None:
            yield path, *found
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _problem(str(key))
            if found is not None:
                yield (*path, "<key>"), *found
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, str(index)))


async def _json_body(request: Request) -> Any:
    """The parsed JSON body (FastAPI has parsed and cached it already), or None."""
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        return await request.json()
    except ValueError:  # not JSON: the route's own validation answers 400 malformed_json
        return None


async def refuse_unstorable_text(request: Request) -> None:
    """422 ``invalid_field`` when a path, query or JSON body string cannot be stored."""
    problems: list[tuple[tuple[str, ...], str, str]] = []
    for name, text in request.path_params.items():
        if isinstance(text, str) and (found := _problem(text)) is not None:
            problems.append((("path", name), *found))
    for name, text in request.query_params.multi_items():
        if (found := _problem(text)) is not None:
            problems.append((("query", name), *found))
    problems.extend(_walk(await _json_body(request), ()))
    if not problems:
        return
    fields = [
        {"field": ".".join(path), "problem": problem, "type": kind}
        for path, problem, kind in problems[:MAX_REPORTED]
    ]
    summary = "; ".join(f"{f['field'] or 'body'}: {f['problem']}" for f in fields[:5])
    raise InvalidInput(summary, code="invalid_field", fields=fields)
