"""Every error answer has one shape: ``{"error": {"code", "message", "details"}}``.

Domain exceptions (``moderation.errors``, ``moderation.media``) map to HTTP here and
nowhere else. Request validation errors become 400 ``malformed_json`` (the body is not
JSON) or 422 ``invalid_field`` with the failing fields listed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from moderation import errors
from moderation.media import ImageTooLarge, MediaError, TooManyFrames, UnsupportedMediaType
from moderation.video import VideoTooLarge, VideoTooLong

log = logging.getLogger(__name__)

STATUS: list[tuple[type[Exception], int]] = [
    (errors.NotAuthenticated, 401),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Gone, 410),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedContent, 415),
    (errors.InvalidInput, 422),
    (errors.RateLimited, 429),
    (UnsupportedMediaType, 415),
    (ImageTooLarge, 413),
    (TooManyFrames, 413),
    (VideoTooLarge, 413),
    (VideoTooLong, 413),
    (MediaError, 422),
]

HTTP_CODES = {
    400: "malformed_json",  # FastAPI's own 400: a body it could not parse (not UTF-8)
    401: "not_authenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status,
        headers=headers,
    )


def _status_for(exc: Exception) -> int:
    return next(status for cls, status in STATUS if isinstance(exc, cls))


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ModerationError | MediaError)
    if isinstance(exc, errors.ModerationError):
        details = exc.details
    else:
        details = {"message_nl": exc.message_nl}  # for the author, in the platform's app
    return error_response(_status_for(exc), exc.code, str(exc), details)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    fields = [
        {
            "field": ".".join(str(part) for part in p.get("loc", ()) if part != "body"),
            "problem": p.get("msg", ""),
            "type": p.get("type", ""),
        }
        for p in problems
    ]
    if any(p["type"] == "model_attributes_type" for p in problems) and len(fields) == 1:
        return error_response(400, "malformed_json", "the request body must be a JSON object")
    summary = "; ".join(f"{f['field'] or 'body'}: {f['problem']}" for f in fields[:5])
    return error_response(422, "invalid_field", summary, {"fields": fields})


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's own ``Allow`` names only
    the first route that matched the path, and ``GET`` and ``PUT /v1/policy`` are two."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):  # included routers, flattened
        match, _ = route.matches(request.scope)  # PARTIAL: the path matches, the method not
        if match is not Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the resource supports
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


DATABASE_RETRY_AFTER_S = 2  # seconds the client waits before sending the request again


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable (a restart, a fail-over) or every pooled connection is
    busy: nothing was accepted, and the same request sent again later is safe (a post's
    id makes the retry idempotent)."""
    log.warning("database unavailable: %s", type(exc).__name__)
    return error_response(
        503,
        "database_unavailable",
        "the service cannot reach its database; send the same request again shortly",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ModerationError, _domain_error)
    app.add_exception_handler(MediaError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)  # every connection busy
    app.add_exception_handler(Exception, _unexpected)
