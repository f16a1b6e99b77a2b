"""The review page: the teacher's flag queue in the browser, on a phone between lessons.

Server-rendered HTML (Jinja2, autoescaped: post text is hostile), Dutch by default, a
little vanilla JavaScript for "select all" and nothing else. Sign-in is the platform's
short-lived token at ``/review/login?token=...``; after that a server-side session
(``moderation.storage.review_sessions``) behind an HttpOnly, SameSite=Lax cookie (Secure
unless ``MODERATION_REVIEW_COOKIE_SECURE=false``, for plain-http local development).
Every form carries the session's CSRF token, checked on every POST, and a POST from
another origin is refused as well. Pages are sent with a strict Content-Security-Policy
(no inline script or style), ``no-store`` and ``no-referrer``.

The routes answer HTML, never the API's JSON error shape: a browser is on the other end.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import moderation.review
from moderation.api.deps import EnqueuerDep, RowId, SessionDep, SettingsDep
from moderation.api.routes.review import stream_audit_csv
from moderation.errors import InvalidInput, NotAuthenticated, NotFound
from moderation.photo_copies import review_copy
from moderation.review.texts import (
    ACTION_LABELS,
    CATEGORY_LABELS,
    DEFAULT_LANG,
    FACE_LABELS,
    KIND_LABELS,
    REJECT_TEMPLATES,
    ROLE_LABELS,
    UI,
    Lang,
    as_lang,
    label,
    translator,
    waiting_text,
)
from moderation.storage import review
from moderation.storage.audit import parse_period
from moderation.storage.review_sessions import (
    COOKIE_NAME,
    session_for_cookie,
    set_lang,
    sign_in,
    sign_out,
)
from moderation.storage.tables import ReviewSession

router = APIRouter(prefix="/review", include_in_schema=False)

PACKAGE = Path(moderation.review.__file__).resolve().parent
STATIC = {
    "review.css": "text/css; charset=utf-8",
    "review.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
MAX_FORM_BYTES = 256 * 1024  # a full queue page's form, reason fields included
COOKIE_PATH = "/review"
FILTER_KEYS = ("category", "group", "role", "kind", "escalated")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "media-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=FileSystemLoader(PACKAGE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _render(name: str, lang: Lang, status: int = 200, **context: Any) -> HTMLResponse:
    def lbl(table: dict[str, tuple[str, str]], key: str | None) -> str:
        return label(table, key, lang)

    html = _env.get_template(name).render(
        lang=lang,
        other_lang="en" if lang == "nl" else "nl",
        t=translator(lang),
        lbl=lbl,
        waiting=lambda minutes: waiting_text(minutes, lang),
        CATEGORY_LABELS=CATEGORY_LABELS,
        KIND_LABELS=KIND_LABELS,
        ROLE_LABELS=ROLE_LABELS,
        ACTION_LABELS=ACTION_LABELS,
        FACE_LABELS=FACE_LABELS,
        reviewer=context.pop("reviewer", None),
        csrf=context.pop("csrf", ""),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _message(lang: Lang, status: int, title_key: str, text_key: str) -> HTMLResponse:
    return _render("message.html", lang, status, title_key=title_key, text_key=text_key)


def _lang_of(request: Request) -> Lang:
    return as_lang(request.query_params.get("lang")) or DEFAULT_LANG


@dataclass(frozen=True)
class Web:
    """The signed-in browser: its session row, the reviewer and the language."""

    row: ReviewSession
    reviewer: review.Reviewer
    lang: Lang


def _web(request: Request, session: SessionDep) -> Web | None:
    found = session_for_cookie(session=session, cookie_value=request.cookies.get(COOKIE_NAME))
    if found is None:
        return None
    row, reviewer = found
    wanted = request.query_params.get("lang")
    lang = set_lang(review_session=row, lang=wanted)
    if wanted:
        session.commit()
    return Web(row, reviewer, lang)


WebDep = Annotated[Web | None, Depends(_web)]


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body, parsed here (no multipart: the pages post none)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        return parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=5000
        )
    except ValueError:
        return {}


FormDep = Annotated[dict[str, list[str]], Depends(_form)]


def _first(form: dict[str, list[str]], key: str) -> str:
    values = form.get(key)
    return values[0] if values else ""


def _csrf_ok(request: Request, web: Web, form: dict[str, list[str]]) -> bool:
    """The session's token in the form, and no foreign Origin (behind a proxy the
    forwarded host counts as ours too)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        ours = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
        if urlsplit(origin).netloc not in ours - {None}:
            return False
    sent = _first(form, "csrf")
    return bool(sent) and hmac.compare_digest(sent.encode(), web.row.csrf_token.encode())


# --- sign-in and out --------------------------------------------------------------------


@router.get("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Query(max_length=8192)] = "",
) -> Response:
    """The platform sends the browser here with a fresh token; we set the session cookie
    and send the browser on to the queue (so the token leaves the address bar)."""
    lang = _lang_of(request)
    try:
        signed = sign_in(
            session=session,
            token=token,
            max_ttl_s=settings.review_token_max_ttl_s,
            leeway_s=settings.review_token_leeway_s,
            session_ttl_s=settings.review_session_ttl_s,
            lang=lang,
        )
    except NotAuthenticated:
        session.rollback()
        return _message(lang, 401, "login_failed_title", "login_failed")
    session.commit()
    response = RedirectResponse("/review", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE_NAME,
        signed.cookie_value,
        max_age=settings.review_session_ttl_s,
        path=COOKIE_PATH,
        secure=settings.review_cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, web: WebDep, form: FormDep) -> Response:
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    if not _csrf_ok(request, web, form):
        return _message(web.lang, 403, "forbidden_title", "forbidden")
    sign_out(session=session, review_session=web.row, actor=web.reviewer.actor)
    session.commit()
    response = _message(web.lang, 200, "title", "signed_out")
    response.delete_cookie(
        COOKIE_NAME, path=COOKIE_PATH, secure=True, httponly=True, samesite="lax"
    )
    return response


# --- the queue --------------------------------------------------------------------------


def _filters(request: Request) -> review.QueueFilters:
    q = request.query_params
    category = q.get("category") or None
    kind = q.get("kind") or None
    role = q.get("role") or None
    return review.QueueFilters(
        category=category if category in CATEGORY_LABELS else None,
        group_id=(q.get("group") or None),
        author_role=role if role in ("parent", "teacher", "staff") else None,
        kind=kind if kind in KIND_LABELS else None,
        escalated_only=q.get("escalated") == "1",
    )


def _filter_query(filters: review.QueueFilters) -> str:
    pairs = {
        "category": filters.category,
        "group": filters.group_id,
        "role": filters.author_role,
        "kind": filters.kind,
        "escalated": "1" if filters.escalated_only else None,
    }
    return urlencode({k: v for k, v in pairs.items() if v})


@router.get("")
def queue(request: Request, session: SessionDep, web: WebDep) -> Response:
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    filters = _filters(request)
    items = review.list_queue(session=session, reviewer=web.reviewer, filters=filters)
    groups = review.reviewer_groups(session=session, reviewer=web.reviewer)
    q = request.query_params
    why = q.get("why", "")
    return _render(
        "queue.html",
        web.lang,
        reviewer=web.reviewer,
        csrf=web.row.csrf_token,
        items=items,
        groups=groups,
        filters=filters,
        back=_filter_query(filters),
        templates=REJECT_TEMPLATES,
        actions=[a.value for a in review.ReviewAction],
        done=int(q["done"]) if q.get("done", "").isdigit() else None,
        failed=int(q["failed"]) if q.get("failed", "").isdigit() else None,
        why_key=f"err_{why}" if f"err_{why}" in UI else "err_other",
    )


def _parse_decision(form: dict[str, list[str]]) -> tuple[str, list[int], str, str]:
    """(action, post pks, reason code, reason text) from one item's button or the bulk bar."""
    pressed = _first(form, "do")
    if pressed and pressed != "bulk":
        action, _, pk = pressed.partition(":")
        if not pk.isdigit():
            raise InvalidInput("no post chosen", code="nothing_selected")
        return (
            action,
            [int(pk)],
            _first(form, f"reason_code_{pk}"),
            _first(form, f"reason_text_{pk}"),
        )
    pks = [int(v) for v in form.get("post", []) if v.isdigit()]
    if not pks:
        raise InvalidInput("nothing selected", code="nothing_selected")
    return (
        _first(form, "bulk_action"),
        pks,
        _first(form, "bulk_reason_code"),
        _first(form, "bulk_reason_text"),
    )


@router.post("/decide")
def decide(
    request: Request,
    session: SessionDep,
    web: WebDep,
    form: FormDep,
    enqueuer: EnqueuerDep,
) -> Response:
    """One item's button, or the bulk bar over the selected items."""
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    if not _csrf_ok(request, web, form):
        return _message(web.lang, 403, "forbidden_title", "forbidden")
    kept = parse_qs(_first(form, "back"))
    back_query = urlencode({k: kept[k][0] for k in FILTER_KEYS if kept.get(k)})
    try:
        action_name, pks, reason_code, reason_text = _parse_decision(form)
        try:
            action = review.ReviewAction(action_name)
        except ValueError as exc:
            raise InvalidInput("choose an action", code="nothing_selected") from exc
        review.human_reasons(action, reason_code, reason_text)  # a missing reason fails all
        outcome = review.review_many(
            session=session,
            reviewer=web.reviewer,
            post_pks=pks,
            action=action,
            reason_code=reason_code or None,
            reason_text=reason_text or None,
            via="web",
        )
    except InvalidInput as exc:
        session.rollback()
        result = {"done": "0", "failed": "1", "why": exc.code}
    else:
        session.commit()
        for callback_pk in outcome.callbacks:
            enqueuer.callback(callback_pk)
        result = {"done": str(len(outcome.done))}
        if outcome.failed:
            result |= {"failed": str(len(outcome.failed)), "why": outcome.failed[0][1]}
    query = "&".join(q for q in (back_query, urlencode(result)) if q)
    return RedirectResponse(f"/review?{query}", status_code=303, headers=SECURITY_HEADERS)


@router.get("/attachments/{attachment_pk}")
def attachment(
    attachment_pk: RowId, request: Request, session: SessionDep, web: WebDep
) -> Response:
    """A photo or video of a post in the reviewer's scope: the metadata-stripped copy if
    there is one, else the original; children without consent blurred (``review_copy``).
    The page draws the face boxes over it from the media check's stored faces."""
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    try:
        found = review.scoped_attachment(
            session=session, reviewer=web.reviewer, attachment_pk=attachment_pk
        )
    except NotFound:
        return _message(web.lang, 404, "not_found_title", "not_found")
    data = found.released_data or found.data
    if data is None:
        return _message(web.lang, 404, "not_found_title", "not_found")
    if found.released_data is not None and found.content_type.startswith("image/"):
        detail = review.media_details(session, [found.post_pk]).get(found.post_pk, {})
        data = review_copy(data, found.content_type, detail.get(found.external_id))
    return Response(
        data,
        media_type=found.content_type,
        headers={
            **SECURITY_HEADERS,
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


# --- the audit trail --------------------------------------------------------------------


@router.get("/history")
def history(request: Request, session: SessionDep, web: WebDep) -> Response:
    """The latest audit events of the reviewer's groups (admins: the whole school)."""
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    events = review.recent_audit(session=session, reviewer=web.reviewer)
    return _render(
        "history.html", web.lang, reviewer=web.reviewer, csrf=web.row.csrf_token, events=events
    )


@router.get("/export")
def export(request: Request, web: WebDep) -> Response:
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    if not web.reviewer.is_admin:
        return _message(web.lang, 404, "not_found_title", "not_found")
    return _render("export.html", web.lang, reviewer=web.reviewer, csrf=web.row.csrf_token)


@router.get("/audit.csv")
def export_csv(
    request: Request,
    settings: SettingsDep,
    web: WebDep,
    start: Annotated[str, Query(alias="from")] = "",
    end: Annotated[str, Query(alias="to")] = "",
) -> Response:
    """The school's audit CSV, for admins (the privacy officer's role on the page)."""
    if web is None:
        return _message(_lang_of(request), 401, "login_needed_title", "login_needed")
    if not web.reviewer.is_admin:
        return _message(web.lang, 404, "not_found_title", "not_found")
    try:
        parse_period(start, end)
    except InvalidInput:
        return _render("export.html", web.lang, 422, reviewer=web.reviewer, csrf=web.row.csrf_token)
    lines: Iterator[str] = stream_audit_csv(settings, web.reviewer.school_id, start, end)
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="audit.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        return Response(status_code=404)
    return Response(
        (PACKAGE / "static" / name).read_bytes(),
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
