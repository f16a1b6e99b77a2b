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

from sqlalchemy.orm import Session

from models.text.notices import find_notices
from models.text.privacy import find_privacy
from moderation.bidi import display_order, displayed_findings, has_controls, worst_of
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
from moderation.storage.retention import purge_expired
from moderation.storage.review import escalate_due
from moderation.storage.review_sessions import purge_sessions
from moderation.storage.roster import student_names
from moderation.storage.tables import Post, Score, utcnow
from workers import media
from workers.scorers import image_models, text_scorer

log = logging.getLogger(__name__)


def _post_to_check(session: Session, post_pk: int, check: str) -> Post | None:
    """The post if ``check`` still has to run on it, else None."""
    post = session.get(Post, post_pk)
    if post is None or post.status != PostStatus.PENDING.value:
        return None
    if check in checks_of(session=session, post_pk=post_pk):
        return None
    return post


def _open_post(settings: Settings, post_pk: int, check: str) -> Post | None:
    with session_scope(settings.database_url) as session:
        return _post_to_check(session, post_pk, check)


def analyse_text(
    text: str, *, scorer: TextScorer, policy: SchoolPolicy, names: Sequence[str]
) -> dict[str, Any]:
    """Everything the text check finds, as the JSON stored in the check's row.

    A text with bidirectional controls is also checked as it is displayed
    (``moderation.bidi``): a right-to-left override must not hide a curse."""
    score = scorer.score([text])[0]
    privacy = find_privacy(text, allowed_numbers=policy.school_phone_numbers, student_names=names)
    if has_controls(text):
        display = display_order(text)
        score = worst_of(score, scorer.score([display.text])[0], display)
        privacy = displayed_findings(
            privacy,
            find_privacy(
                display.text, allowed_numbers=policy.school_phone_numbers, student_names=names
            ),
            display,
        )
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
    """Score the text, and look for personal details and things to remind the author of.

    A post with text alone has no other check to race with, so its result is recorded
    and the post decided in one transaction; otherwise the result is committed first and
    the decision tried in a fresh one (see the module docstring)."""
    with session_scope(settings.database_url) as session:  # one read for all it needs
        post = _post_to_check(session, post_pk, TEXT_CHECK)
        if post is not None:
            alone = needed_checks(post) == {TEXT_CHECK}
            policy = current_policy(session=session, school_id=post.school_id)
            names = student_names(session=session, school_id=post.school_id)
    if post is None:
        decide_if_ready(settings, post_pk)
        return
    scorer = text_scorer(settings)  # scored outside any transaction: the model takes a while
    result = analyse_text(post.text, scorer=scorer, policy=policy, names=names)
    callback_pk = None
    with session_scope(settings.database_url) as session:
        record_check(
            session=session,
            post_pk=post_pk,
            check_name=TEXT_CHECK,
            scorer=scorer.name,
            ok=True,
            result=result,
        )
        if alone:
            session.add(post)  # the post as just read, attachments and all: no second read
            callback_pk = _decide(session, post_pk, policy)
    if not alone:
        decide_if_ready(settings, post_pk)
    elif callback_pk is not None:
        enqueuer_for(settings).callback(callback_pk)


def run_media_check(settings: Settings, post_pk: int) -> None:
    """Check the post's photos and videos (``workers.media``), then decide if ready."""
    if _open_post(settings, post_pk, MEDIA_CHECK) is not None:
        media.run_media_check(settings, post_pk, image_models(settings))
    decide_if_ready(settings, post_pk)


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
    media_score = checks.get(MEDIA_CHECK)
    base = text_results(text.result) if text is not None and text.ok else CheckResults()
    findings: tuple[AttachmentFinding, ...] = ()
    if media_score is not None and media_score.ok:
        findings = tuple(AttachmentFinding.from_json(f) for f in media_score.result["findings"])
    return replace(
        base,
        text_failed=text is not None and not text.ok,
        media_findings=findings,
        media_failed=media_score is not None and not media_score.ok,
    )


def decide_if_ready(settings: Settings, post_pk: int) -> None:
    """Decide the post if every check it needs has a result (once, whoever calls)."""
    with session_scope(settings.database_url) as session:
        callback_pk = _decide(session, post_pk)
    if callback_pk is not None:
        enqueuer_for(settings).callback(callback_pk)


def _decide(session: Session, post_pk: int, policy: SchoolPolicy | None = None) -> int | None:
    """Decide in this transaction if every check is in; the callback's pk to enqueue once
    it commits, if any. ``policy``: the one just read, or None to read it here."""
    post = session.get(Post, post_pk)  # from the identity map when the caller added it
    if post is None or post.status != PostStatus.PENDING.value:
        return None  # (a stale "pending" is harmless: the decision is inserted only once)
    checks = checks_of(session=session, post_pk=post_pk)
    if not needed_checks(post) <= checks.keys():
        return None
    if policy is None:
        policy = current_policy(session=session, school_id=post.school_id)
    decision = decide(post_context(post), _results(checks), policy)
    return store_auto_decision(session=session, post=post, decision=decision)


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
        purge_expired(session=session, now=utcnow())  # texts and photos past retention
        lost_callbacks = [
            cb.pk
            for cb in stale_callbacks(
                session=session,
                never_tried_after=timedelta(seconds=settings.pending_timeout_s),
                retried_after=timedelta(seconds=settings.callback_stale_after_s),
            )
        ]
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
