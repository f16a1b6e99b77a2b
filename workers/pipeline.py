"""What the tasks do, as plain functions over a database URL (tested without Celery).

Each step re-reads the post by id, skips work already stored, writes its result
idempotently and commits, and only then tries to decide in a fresh transaction: so
whichever of the text and media checks finishes last sees both results and decides.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from models.text.notices import find_notices
from models.text.privacy import find_privacy
from moderation.config import Settings
from moderation.domain import (
    NoticeFinding,
    NoticeKind,
    PostStatus,
    PrivacyFinding,
    PrivacyKind,
    TextScore,
    TextScorer,
)
from moderation.media import ImageLimits, MediaError, sanitize_image
from moderation.policy import AttachmentFinding, CheckResults, SchoolPolicy, decide
from moderation.queue import enqueuer_for
from moderation.storage.callbacks import stale_callbacks, touch_callback
from moderation.storage.db import session_scope
from moderation.storage.policies import current_policy
from moderation.storage.posts import (
    MEDIA_CHECK,
    TEXT_CHECK,
    checks_of,
    mark_enqueued,
    needed_checks,
    post_context,
    record_check,
    stale_pending_posts,
    store_auto_decision,
)
from moderation.storage.review import escalate_due
from moderation.storage.review_sessions import purge_sessions
from moderation.storage.roster import student_names
from moderation.storage.tables import Attachment, Post, Score
from workers.scorers import text_scorer

log = logging.getLogger(__name__)


def _open_post(settings: Settings, post_pk: int, check: str) -> Post | None:
    """The post if ``check`` still has to run on it, else None."""
    with session_scope(settings.database_url) as session:
        post = session.get(Post, post_pk)
        if post is None or post.status != PostStatus.PENDING.value:
            return None
        if check in checks_of(session=session, post_pk=post_pk):
            return None
        return post


def analyse_text(
    text: str, *, scorer: TextScorer, policy: SchoolPolicy, names: Sequence[str]
) -> dict[str, Any]:
    """Everything the text check finds, as the JSON stored in the check's row."""
    score = scorer.score([text])[0]
    privacy = find_privacy(text, allowed_numbers=policy.school_phone_numbers, student_names=names)
    return {
        "score": score.to_json(),
        "privacy": [{"kind": f.kind.value, "span": list(f.span)} for f in privacy],
        "notices": [{"kind": n.kind.value, "span": list(n.span)} for n in find_notices(text)],
    }


def text_results(result: dict[str, Any]) -> CheckResults:
    """The stored text check's JSON back as the policy's input."""
    return CheckResults(
        text=TextScore.from_json(result["score"]),
        privacy=tuple(
            PrivacyFinding(PrivacyKind(p["kind"]), (p["span"][0], p["span"][1]))
            for p in result["privacy"]
        ),
        notices=tuple(
            NoticeFinding(NoticeKind(n["kind"]), (n["span"][0], n["span"][1]))
            for n in result["notices"]
        ),
    )


def run_text_check(settings: Settings, post_pk: int) -> None:
    """Score the text, and look for personal details and things to remind the author of."""
    post = _open_post(settings, post_pk, TEXT_CHECK)
    if post is not None:
        scorer = text_scorer(settings)
        with session_scope(settings.database_url) as session:
            policy = current_policy(session=session, school_id=post.school_id)
            names = student_names(session=session, school_id=post.school_id)
        result = analyse_text(post.text, scorer=scorer, policy=policy, names=names)
        with session_scope(settings.database_url) as session:
            record_check(
                session=session,
                post_pk=post_pk,
                check_name=TEXT_CHECK,
                scorer=scorer.name,
                ok=True,
                result=result,
            )
    decide_if_ready(settings, post_pk)


def run_media_check(settings: Settings, post_pk: int) -> None:
    if _open_post(settings, post_pk, MEDIA_CHECK) is None:
        decide_if_ready(settings, post_pk)
        return
    findings: list[dict[str, str]] = []
    limits = ImageLimits(max_bytes=settings.max_attachment_bytes)
    with session_scope(settings.database_url) as session:
        post = session.get(Post, post_pk)
        assert post is not None
        for att in post.attachments:
            findings.extend(_check_attachment(att, limits))
        record_check(
            session=session,
            post_pk=post_pk,
            check_name=MEDIA_CHECK,
            scorer="intake",
            ok=True,
            result={"findings": findings},
        )
    decide_if_ready(settings, post_pk)


def _check_attachment(att: Attachment, limits: ImageLimits) -> list[dict[str, str]]:
    """Sanitise one photo (metadata stripped); what keeps it from release, if anything."""
    if att.data is None:
        return [{"attachment_id": att.external_id, "code": "attachment_unreadable"}]
    try:
        clean = sanitize_image(att.data, limits)
    except MediaError as exc:
        return [{"attachment_id": att.external_id, "code": exc.code, "detail": str(exc)}]
    att.released_data = clean.data
    return []


def record_failure(settings: Settings, post_pk: int, check: str, error: str) -> None:
    """A check failed after its retries: store that, so the decision holds the post."""
    with session_scope(settings.database_url) as session:
        record_check(
            session=session,
            post_pk=post_pk,
            check_name=check,
            scorer="failed",
            ok=False,
            result={"error": error[:500]},
        )
    decide_if_ready(settings, post_pk)


def _results(checks: dict[str, Score]) -> CheckResults:
    text = checks.get(TEXT_CHECK)
    media = checks.get(MEDIA_CHECK)
    base = text_results(text.result) if text is not None and text.ok else CheckResults()
    findings: tuple[AttachmentFinding, ...] = ()
    if media is not None and media.ok:
        findings = tuple(
            AttachmentFinding(f["attachment_id"], f["code"], f.get("detail", ""))
            for f in media.result["findings"]
        )
    return replace(
        base,
        text_failed=text is not None and not text.ok,
        media_findings=findings,
        media_failed=media is not None and not media.ok,
    )


def decide_if_ready(settings: Settings, post_pk: int) -> None:
    """Decide the post if every check it needs has a result (once, whoever calls)."""
    callback_pk = None
    with session_scope(settings.database_url) as session:
        post = session.get(Post, post_pk)
        if post is None or post.status != PostStatus.PENDING.value:
            return
        checks = checks_of(session=session, post_pk=post_pk)
        if not needed_checks(post) <= checks.keys():
            return
        policy = current_policy(session=session, school_id=post.school_id)
        decision = decide(post_context(post), _results(checks), policy)
        callback_pk = store_auto_decision(session=session, post=post, decision=decision)
    if callback_pk is not None:
        enqueuer_for(settings).callback(callback_pk)


@dataclass(frozen=True)
class SweepReport:
    requeued: int  # posts sent to the scoring queues again
    failed: int  # posts held as scoring_failed after every re-enqueue
    callbacks: int  # callbacks sent to the callback queue again


def sweep(settings: Settings) -> SweepReport:
    """Re-enqueue posts pending too long; after ``max_enqueues`` tries, fail them closed."""
    requeued = failed = 0
    enqueuer = enqueuer_for(settings)
    with session_scope(settings.database_url) as session:
        stale = [
            (p.pk, needed_checks(p) - checks_of(session=session, post_pk=p.pk).keys())
            for p in stale_pending_posts(
                session=session, older_than=timedelta(seconds=settings.pending_timeout_s)
            )
        ]
        counts = {pk: mark_enqueued(session=session, post_pk=pk) for pk, _ in stale}
        escalate_due(session)  # flags waiting past the school's limit, and threats
        purge_sessions(session=session)  # expired review-page sign-ins
        lost_callbacks = [cb.pk for cb in stale_callbacks(session=session)]
        for cb_pk in lost_callbacks:
            touch_callback(session=session, callback_pk=cb_pk)
    for pk, missing in stale:
        if counts[pk] > settings.max_enqueues:
            for check in missing or {TEXT_CHECK}:
                record_failure(settings, pk, check, "still pending after every re-enqueue")
            failed += 1
        elif not missing:
            decide_if_ready(settings, pk)
        else:
            enqueuer.post(pk, text=TEXT_CHECK in missing, media=MEDIA_CHECK in missing)
            requeued += 1
    for cb_pk in lost_callbacks:
        enqueuer.callback(cb_pk)
    if requeued or failed or lost_callbacks:
        log.info(
            "sweeper: re-enqueued %d posts and %d callbacks; held %d as scoring_failed",
            requeued,
            len(lost_callbacks),
            failed,
        )
    return SweepReport(requeued, failed, len(lost_callbacks))
