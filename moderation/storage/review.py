"""The teacher's flag queue: who may see what, human decisions, reports, appeals and
escalation.

**Scope.** A reviewer (a staff member of one school) sees and decides the open flags of
posts in their own groups; an admin sees the whole school; nobody ever sees another
school. A post outside the reviewer's scope is answered exactly like a post that does
not exist (``unknown_post``), so its existence is not revealed. School-wide posts (no
group) are for admins.

**A human decision** closes the open flag (only the transaction whose ``UPDATE ... WHERE
status = 'open'`` matched does anything; the other gets ``already_decided``), appends a
decision with the next sequence number, sets the post's status, writes an audit event
and puts the callback in the outbox; the caller commits and then enqueues the callback.

**Reports** (POLICY.md rule 4) open a flag on a *released* post; the post stays released
(the platform may keep showing it) until a reviewer rejects it. A second report joins
the open flag. **Appeals** reopen a *rejected* post for one more look, once per post; the
reviewer who rejected it may not decide the appeal while another eligible reviewer (an
admin, or a staff member of the post's group) exists.

**Escalation**: :func:`escalate_due` marks open flags that waited longer than the
school's limit in school time (``SchoolHours.minutes_between``: days, hours and
holidays of the school's policy), and every threat, as
escalated; admins see them with a badge.

Errors raised (``moderation.errors``): NotFound ``unknown_post``, ``unknown_attachment``;
InvalidInput ``unknown_reviewer``, ``unknown_reporter``, ``not_the_author``,
``reason_required``, ``unknown_reason``, ``reason_too_long``; Conflict
``already_decided``, ``not_in_queue``, ``not_released``, ``not_rejected``,
``already_appealed``, ``appeal_needs_other_reviewer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from moderation.domain import ACTION_TO_STATUS, Action, PostStatus
from moderation.errors import Conflict, InvalidInput, ModerationError, NotFound
from moderation.photo_copies import blurred_release, stored_faces
from moderation.policy import SchoolPolicy
from moderation.review.highlight import Segment, segments
from moderation.review.texts import (
    REJECT_DEFAULT_EN,
    REJECT_DEFAULT_NL,
    REPHRASE_EN,
    REPHRASE_NL,
    TEMPLATES_BY_CODE,
)
from moderation.schemas import PostPublic
from moderation.storage.callbacks import queue_callback
from moderation.storage.image_hashes import remember_released
from moderation.storage.policies import current_policy
from moderation.storage.posts import as_utc, get_post, latest_decision, post_public
from moderation.storage.tables import (
    Attachment,
    AuditEvent,
    Decision,
    Flag,
    Group,
    Parent,
    Post,
    Score,
    Staff,
    StaffGroup,
    Student,
    utcnow,
)

ADMIN = "admin"
OPEN = "open"
CLOSED = "closed"
THREAT_CODE = "text_threat"
REPORTED = "reported"  # the flag reason of a report
APPEAL = "appeal"  # the flag reason of an appeal
HUMAN_POLICY_VERSION = "review"  # policy_version of a human decision
MAX_REASON_CHARS = 1000  # a reviewer's free text for the author
MAX_REPORT_CHARS = 2000  # a report's or an appeal's text
QUEUE_LIMIT = 200  # items on one page of the queue


class ReviewAction(StrEnum):
    """What a reviewer can do with a flagged post."""

    RELEASE = "release"
    RELEASE_BLUR = "release_blur"  # release a copy with the faces blurred (photo_copies)
    REJECT = "reject"  # back to the author with a reason
    REPHRASE = "rephrase"  # back to the author, asking them to rephrase


ACTION_RESULT = {
    ReviewAction.RELEASE: Action.RELEASE,
    ReviewAction.RELEASE_BLUR: Action.RELEASE,
    ReviewAction.REJECT: Action.REJECT,
    ReviewAction.REPHRASE: Action.REJECT,
}


class FlagKind(StrEnum):
    HOLD = "hold"  # held by the automatic decision
    REPORT = "report"  # a released post someone reported
    APPEAL = "appeal"  # a rejected post its author appealed


class Escalation(StrEnum):
    OVERDUE = "overdue"
    THREAT = "threat"


# --- who reviews ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reviewer:
    """A staff member acting on the queue, with the groups they may review."""

    school_id: str
    staff_pk: int
    staff_id: str
    name: str
    role: str  # teacher | staff | admin
    group_pks: frozenset[int]

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def actor(self) -> str:
        """How the audit trail names this reviewer."""
        return f"{self.role}:{self.staff_id}"

    def can_review(self, group_pk: int | None) -> bool:
        return self.is_admin or (group_pk is not None and group_pk in self.group_pks)


def effective_role(claimed: str, roster: str) -> str:
    """The platform may lower a role, never raise it: admin only if both say admin."""
    return claimed if roster == ADMIN else roster


def _staff(session: Session, school_id: str, staff_id: str) -> Staff | None:
    return session.scalars(
        select(Staff)
        .where(Staff.school_id == school_id, Staff.external_id == staff_id)
        .options(selectinload(Staff.groups))
    ).first()


def get_staff(*, session: Session, school_id: str, staff_id: str) -> Staff:
    """A staff member of the school, with their groups; NotFound ``unknown_staff``."""
    staff = _staff(session, school_id, staff_id)
    if staff is None:
        raise NotFound(f"staff member {staff_id!r} is not in the roster", code="unknown_staff")
    return staff


def reviewer_from_roster(*, session: Session, school_id: str, staff_id: str) -> Reviewer:
    """The API's reviewer: the roster decides role and groups."""
    staff = _staff(session, school_id, staff_id)
    if staff is None:
        raise InvalidInput(
            f"staff member {staff_id!r} is not in the roster", code="unknown_reviewer"
        )
    return Reviewer(
        school_id=school_id,
        staff_pk=staff.pk,
        staff_id=staff.external_id,
        name=staff.name,
        role=staff.role,
        group_pks=frozenset(g.pk for g in staff.groups),
    )


def reviewer_with_groups(
    *, staff: Staff, claimed_role: str, group_ids: Iterable[str], name: str | None = None
) -> Reviewer:
    """A signed-in reviewer: the token's groups intersected with the roster's."""
    allowed = set(group_ids)
    return Reviewer(
        school_id=staff.school_id,
        staff_pk=staff.pk,
        staff_id=staff.external_id,
        name=name or staff.name,
        role=effective_role(claimed_role, staff.role),
        group_pks=frozenset(g.pk for g in staff.groups if g.external_id in allowed),
    )


def eligible_reviewer_ids(*, session: Session, school_id: str, group_pk: int | None) -> set[str]:
    """Staff ids who may review a post of this group: its staff and every admin."""
    ids = set(
        session.scalars(
            select(Staff.external_id).where(Staff.school_id == school_id, Staff.role == ADMIN)
        )
    )
    if group_pk is not None:
        ids |= set(
            session.scalars(
                select(Staff.external_id)
                .join(StaffGroup, StaffGroup.staff_pk == Staff.pk)
                .where(Staff.school_id == school_id, StaffGroup.group_pk == group_pk)
            )
        )
    return ids


def handles_escalations(session: Session, reviewer: Reviewer) -> bool:
    """Whether the reviewer's role is one of the policy's escalation roles (besides admin,
    for example the care coordinator): they see and decide escalated items school-wide."""
    roles = current_policy(session=session, school_id=reviewer.school_id).escalation_roles
    return reviewer.role in roles


def _may_review(session: Session, reviewer: Reviewer, post: Post) -> bool:
    if reviewer.can_review(post.group_pk):
        return True
    if not handles_escalations(session, reviewer):
        return False
    flag = _open_flag(session, post.pk)
    return flag is not None and flag.escalated_at is not None


def scoped_post(
    *, session: Session, reviewer: Reviewer, post_id: str | None = None, post_pk: int | None = None
) -> Post:
    """The post, if this reviewer may see it; otherwise ``unknown_post`` as if absent."""
    query = select(Post).where(Post.school_id == reviewer.school_id)
    if post_id is not None:
        query = query.where(Post.external_id == post_id)
    elif post_pk is not None:
        query = query.where(Post.pk == post_pk)
    else:
        raise ValueError("scoped_post needs post_id or post_pk")
    post = session.scalars(query).first()
    if post is None or not _may_review(session, reviewer, post):
        shown = post_id if post_id is not None else str(post_pk)
        raise NotFound(f"post {shown!r} is not known", code="unknown_post")
    return post


def scoped_attachment(*, session: Session, reviewer: Reviewer, attachment_pk: int) -> Attachment:
    attachment = session.get(Attachment, attachment_pk)
    if attachment is not None:
        post = attachment.post
        if post.school_id == reviewer.school_id and _may_review(session, reviewer, post):
            return attachment
    raise NotFound("attachment is not known", code="unknown_attachment")


def _open_flag(session: Session, post_pk: int, *, lock: bool = False) -> Flag | None:
    query = select(Flag).where(Flag.post_pk == post_pk, Flag.status == OPEN)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


# --- human decisions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    post_id: str
    post_pk: int
    action: ReviewAction
    sequence: int
    status: PostStatus
    blur: bool
    public: PostPublic
    callback_pk: int | None  # enqueue after commit


def _reason(code: str, nl: str, en: str) -> dict[str, Any]:
    return {
        "code": code,
        "category": None,
        "score": None,
        "spans": [],
        "message_nl": nl,
        "message_en": en,
    }


def human_reasons(
    action: ReviewAction, reason_code: str | None, reason_text: str | None
) -> list[dict[str, Any]]:
    """The reasons of a human decision; a rejection needs a template or free text."""
    note = (reason_text or "").strip()
    if len(note) > MAX_REASON_CHARS:
        raise InvalidInput(
            f"the reason is over {MAX_REASON_CHARS} characters",
            code="reason_too_long",
            limit=MAX_REASON_CHARS,
        )
    code = (reason_code or "").strip() or None
    if code is not None and code not in TEMPLATES_BY_CODE:
        raise InvalidInput(
            f"unknown reason template {code!r}; choose from {', '.join(TEMPLATES_BY_CODE)}",
            code="unknown_reason",
        )
    if action in (ReviewAction.RELEASE, ReviewAction.RELEASE_BLUR):
        return []
    if action is ReviewAction.REPHRASE:
        nl = f"{REPHRASE_NL}\n\n{note}" if note else REPHRASE_NL
        en = f"{REPHRASE_EN}\n\n{note}" if note else REPHRASE_EN
        return [_reason("review_rephrase", nl, en)]
    template = TEMPLATES_BY_CODE.get(code) if code else None
    if template is not None and template.message_nl:
        base_nl, base_en = template.message_nl, template.message_en
    elif note:  # "other", or no template: the note is the reason, after a plain opening
        base_nl, base_en = REJECT_DEFAULT_NL, REJECT_DEFAULT_EN
    else:
        raise InvalidInput(
            "a rejection needs a reason: a template or a note for the author",
            code="reason_required",
        )
    nl = f"{base_nl}\n\n{note}" if note else base_nl
    en = f"{base_en}\n\n{note}" if note else base_en
    return [_reason(f"review_{template.code}" if template else "review_rejected", nl, en)]


def _check_appeal_reviewer(session: Session, post: Post, flag: Flag, reviewer: Reviewer) -> None:
    first = flag.detail.get("rejected_by")
    if not first or first == "auto" or first != reviewer.staff_id:
        return
    others = eligible_reviewer_ids(
        session=session, school_id=post.school_id, group_pk=post.group_pk
    ) - {first}
    if others:
        raise Conflict(
            "the reviewer who rejected this post cannot decide its appeal; "
            "another reviewer of the group has to",
            code="appeal_needs_other_reviewer",
            reviewers=len(others),
        )


def _with_blur(public: dict[str, Any]) -> dict[str, Any]:
    decision = public.get("decision") or {}
    for att in decision.get("attachments", []):
        att["blur"] = True
    return public


def review_post(
    *,
    session: Session,
    reviewer: Reviewer,
    action: ReviewAction,
    reason_code: str | None = None,
    reason_text: str | None = None,
    post_id: str | None = None,
    post_pk: int | None = None,
    via: str = "api",
    now: datetime | None = None,
) -> ReviewOutcome:
    """Decide one flagged post. Commit is the caller's job, then enqueue the callback."""
    now = now or utcnow()
    post = scoped_post(session=session, reviewer=reviewer, post_id=post_id, post_pk=post_pk)
    flag = _open_flag(session, post.pk, lock=True)
    if flag is None:
        decided = session.scalar(
            select(func.count()).select_from(Flag).where(Flag.post_pk == post.pk)
        )
        if decided:
            raise Conflict(
                f"post {post.external_id!r} has been decided already", code="already_decided"
            )
        raise Conflict(f"post {post.external_id!r} is not in the review queue", code="not_in_queue")
    reasons = human_reasons(action, reason_code, reason_text)
    if flag.kind == FlagKind.APPEAL:
        _check_appeal_reviewer(session, post, flag, reviewer)
    blur = action is ReviewAction.RELEASE_BLUR
    if blur:  # the released copies get the faces blurred (moderation.photo_copies)
        details = media_details(session, [post.pk]).get(post.pk, {})
        for att in post.attachments:
            if att.released_data is not None:
                att.released_data = blurred_release(
                    att.released_data, att.content_type, details.get(att.external_id)
                )
    closed = session.execute(
        update(Flag)
        .where(Flag.pk == flag.pk, Flag.status == OPEN)
        .values(status=CLOSED, closed_by=reviewer.staff_id, closed_at=now)
        .returning(Flag.pk)
        .execution_options(synchronize_session=False)
    ).first()
    if closed is None:  # another reviewer's transaction closed it first
        raise Conflict(
            f"post {post.external_id!r} has been decided already", code="already_decided"
        )
    session.expire(flag)

    result = ACTION_RESULT[action]
    sequence = (
        session.scalar(select(func.max(Decision.sequence)).where(Decision.post_pk == post.pk)) or 0
    ) + 1
    attachment_action = Action.RELEASE if result is Action.RELEASE else Action.REJECT
    attachments: list[dict[str, Any]] = [
        {"id": a.external_id, "action": attachment_action.value, "reasons": []}
        | ({"blur": True} if blur else {})
        for a in post.attachments
    ]
    session.add(
        Decision(
            post_pk=post.pk,
            sequence=sequence,
            action=result.value,
            reasons=reasons,
            attachments=attachments,
            decided_by=reviewer.staff_id,
            policy_version=HUMAN_POLICY_VERSION,
            created_at=now,
        )
    )
    status = ACTION_TO_STATUS[result]
    post.status = status.value
    post.updated_at = now
    session.add(
        AuditEvent(
            school_id=post.school_id,
            at=now,
            actor=reviewer.actor,
            action=f"review.{action.value}",
            post_pk=post.pk,
            detail={
                "flag": flag.kind,
                "flag_reason": flag.reason,
                "sequence": sequence,
                "reason_code": reasons[0]["code"] if reasons else None,
                "reason_text": (reason_text or "").strip() or None,
                "blur": blur,
                "escalated": flag.escalated_at is not None,
                "via": via,
            },
        )
    )
    session.flush()
    if result is Action.RELEASE:  # the photos it releases join the released hash list
        remember_released(session=session, post=post, added_by=reviewer.actor)
    public = post_public(session=session, post=post)
    payload = public.model_dump(mode="json")
    if blur:
        payload = _with_blur(payload)
    callback_pk = queue_callback(session=session, post=post, sequence=sequence, decision=payload)
    return ReviewOutcome(
        post_id=post.external_id,
        post_pk=post.pk,
        action=action,
        sequence=sequence,
        status=status,
        blur=blur,
        public=public,
        callback_pk=callback_pk,
    )


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    done: list[ReviewOutcome] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (post pk, error code)

    @property
    def callbacks(self) -> list[int]:
        return [o.callback_pk for o in self.done if o.callback_pk is not None]


def review_many(
    *,
    session: Session,
    reviewer: Reviewer,
    post_pks: Sequence[int],
    action: ReviewAction,
    reason_code: str | None = None,
    reason_text: str | None = None,
    via: str = "web",
    now: datetime | None = None,
) -> BulkOutcome:
    """The same decision on several posts; one that fails does not stop the others."""
    outcome = BulkOutcome()
    for pk in dict.fromkeys(post_pks):
        try:
            with session.begin_nested():
                outcome.done.append(
                    review_post(
                        session=session,
                        reviewer=reviewer,
                        action=action,
                        reason_code=reason_code,
                        reason_text=reason_text,
                        post_pk=pk,
                        via=via,
                        now=now,
                    )
                )
        except ModerationError as exc:
            outcome.failed.append((pk, exc.code))
    return outcome


# --- reports and appeals ----------------------------------------------------------------


def _known_person(session: Session, school_id: str, person_id: str, role: str) -> bool:
    model: type[Parent] | type[Staff] = Parent if role == "parent" else Staff
    return (
        session.scalar(
            select(func.count())
            .select_from(model)
            .where(model.school_id == school_id, model.external_id == person_id)
        )
        or 0
    ) > 0


def _check_text(text: str, what: str) -> str:
    text = text.strip()
    if len(text) > MAX_REPORT_CHARS:
        raise InvalidInput(
            f"the {what} is over {MAX_REPORT_CHARS} characters",
            code="text_too_long",
            limit=MAX_REPORT_CHARS,
        )
    return text


def report_post(
    *,
    session: Session,
    school_id: str,
    post_id: str,
    reporter_id: str,
    reporter_role: str,
    text: str,
    now: datetime | None = None,
) -> Flag:
    """Someone doubts a released post: it enters the queue (flag reason ``reported``).

    The post stays released; a reviewer's rejection takes it down (through the callback).
    A report on a post already in the queue joins its open flag.
    """
    now = now or utcnow()
    text = _check_text(text, "report")
    post = get_post(session=session, school_id=school_id, post_id=post_id)
    if not _known_person(session, school_id, reporter_id, reporter_role):
        raise InvalidInput(
            f"{reporter_role} {reporter_id!r} is not in the roster", code="unknown_reporter"
        )
    if post.status not in (PostStatus.RELEASED.value, PostStatus.HELD.value):
        raise Conflict(
            f"only a released post can be reported; post {post_id!r} is {post.status}",
            code="not_released",
            status=post.status,
        )
    report = {
        "reporter_id": reporter_id,
        "reporter_role": reporter_role,
        "text": text,
        "at": now.isoformat(),
    }
    flag = _open_flag(session, post.pk, lock=True)
    if flag is None:
        try:
            with session.begin_nested():
                flag = Flag(
                    school_id=school_id,
                    post_pk=post.pk,
                    reason=REPORTED,
                    kind=FlagKind.REPORT.value,
                    detail={"reports": [report]},
                    created_at=now,
                )
                session.add(flag)
                session.flush()
        except IntegrityError:  # a report at the same moment opened it
            flag = _open_flag(session, post.pk, lock=True)
            if flag is None:
                raise
            flag.detail = {**flag.detail, "reports": [*flag.detail.get("reports", []), report]}
    else:
        flag.detail = {**flag.detail, "reports": [*flag.detail.get("reports", []), report]}
    session.add(
        AuditEvent(
            school_id=school_id,
            at=now,
            actor=f"{reporter_role}:{reporter_id}",
            action="post.reported",
            post_pk=post.pk,
            detail={"flag": flag.kind, "text": text},
        )
    )
    session.flush()
    return flag


def appeal_post(
    *,
    session: Session,
    school_id: str,
    post_id: str,
    author_id: str,
    text: str,
    now: datetime | None = None,
) -> Flag:
    """The author objects to a rejection: the post enters the queue once more, as an
    appeal; someone other than the first reviewer decides it where possible."""
    now = now or utcnow()
    text = _check_text(text, "appeal")
    post = get_post(session=session, school_id=school_id, post_id=post_id)
    if post.author_id != author_id:
        raise InvalidInput("only the author of a post can appeal it", code="not_the_author")
    if post.status != PostStatus.REJECTED.value:
        raise Conflict(
            f"only a rejected post can be appealed; post {post_id!r} is {post.status}",
            code="not_rejected",
            status=post.status,
        )
    appealed = session.scalar(
        select(func.count())
        .select_from(Flag)
        .where(Flag.post_pk == post.pk, Flag.kind == FlagKind.APPEAL.value)
    )
    if appealed:
        raise Conflict(f"post {post_id!r} has been appealed already", code="already_appealed")
    last = latest_decision(session=session, post_pk=post.pk)
    detail = {
        "text": text,
        "rejected_by": last.decided_by if last else None,
        "rejected_sequence": last.sequence if last else None,
        "rejection": [r.get("code") for r in last.reasons] if last else [],
    }
    try:
        with session.begin_nested():
            flag = Flag(
                school_id=school_id,
                post_pk=post.pk,
                reason=APPEAL,
                kind=FlagKind.APPEAL.value,
                detail=detail,
                created_at=now,
            )
            session.add(flag)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"post {post_id!r} is in the review queue already", code="already_appealed"
        ) from exc
    session.add(
        AuditEvent(
            school_id=school_id,
            at=now,
            actor=f"{post.author_role}:{author_id}",
            action="post.appealed",
            post_pk=post.pk,
            detail={"text": text, "rejected_by": detail["rejected_by"]},
        )
    )
    session.flush()
    return flag


# --- escalation -------------------------------------------------------------------------


def _reason_codes_by_post(session: Session, post_pks: Iterable[int]) -> dict[int, set[str]]:
    pks = list(set(post_pks))
    codes: dict[int, set[str]] = {pk: set() for pk in pks}
    if not pks:
        return codes
    for post_pk, reasons in session.execute(
        select(Decision.post_pk, Decision.reasons).where(Decision.post_pk.in_(pks))
    ):
        codes[post_pk] |= {str(r.get("code")) for r in reasons or []}
    return codes


def due_escalation(
    flag: Flag, reason_codes: set[str], policy: SchoolPolicy, now: datetime
) -> Escalation | None:
    """Why this open flag goes to the admins now, if it does.

    A flag is overdue once it has waited the policy's ``escalation_after_hours`` in
    school time (the school's days, hours and holidays), not in clock time.
    """
    if flag.reason == THREAT_CODE or THREAT_CODE in reason_codes:
        return Escalation.THREAT
    waited = policy.school_hours.minutes_between(as_utc(flag.created_at), now)
    if waited >= policy.escalation_after_hours * 60:
        return Escalation.OVERDUE
    return None


def escalate_due(session: Session, now: datetime | None = None) -> list[int]:
    """Mark open flags that waited past their school's limit, and threats, as escalated.

    Idempotent (an escalated flag is not touched again); the sweeper calls it. Returns
    the pks of the flags escalated by this call.
    """
    now = now or utcnow()
    flags = session.scalars(
        select(Flag).where(Flag.status == OPEN, Flag.escalated_at.is_(None))
    ).all()
    codes = _reason_codes_by_post(session, (flag.post_pk for flag in flags))
    policies: dict[str, SchoolPolicy] = {}
    escalated: list[int] = []
    for flag in flags:
        if flag.school_id not in policies:
            policies[flag.school_id] = current_policy(session=session, school_id=flag.school_id)
        policy = policies[flag.school_id]
        why = due_escalation(flag, codes.get(flag.post_pk, set()), policy, now)
        if why is None:
            continue
        marked = session.execute(
            update(Flag)
            .where(Flag.pk == flag.pk, Flag.escalated_at.is_(None), Flag.status == OPEN)
            .values(escalated_at=now, escalation=why.value)
            .returning(Flag.pk)
            .execution_options(synchronize_session=False)
        ).first()
        if marked is None:
            continue
        session.add(
            AuditEvent(
                school_id=flag.school_id,
                at=now,
                actor="auto",
                action="flag.escalated",
                post_pk=flag.post_pk,
                detail={
                    "flag": flag.kind,
                    "escalation": why.value,
                    "school_minutes": round(
                        policy.school_hours.minutes_between(as_utc(flag.created_at), now)
                    ),
                },
            )
        )
        escalated.append(flag.pk)
    session.flush()
    return escalated


# --- the queue as the page shows it -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFilters:
    category: str | None = None
    group_id: str | None = None
    author_role: str | None = None
    kind: str | None = None
    escalated_only: bool = False


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A face in a photo, as fractions of its width and height, with the media check's
    verdict: ``status`` consented | no_consent | unknown | undecidable; ``matters`` when
    the face kept the photo from a plain release (blurred, or boxed for the teacher)."""

    left: float
    top: float
    width: float
    height: float
    status: str
    matters: bool

    @classmethod
    def from_stored(cls, face: dict[str, Any]) -> FaceBox:
        x0, y0, x1, y1 = (float(v) for v in face["box_fraction"])
        return cls(x0, y0, x1 - x0, y1 - y0, str(face.get("status")), bool(face.get("matters")))


@dataclass(frozen=True, slots=True)
class AttachmentView:
    pk: int
    id: str
    content_type: str
    action: str  # the latest decision's action for this attachment
    faces: tuple[FaceBox, ...] = ()  # photos only: from the media check's stored result


@dataclass(frozen=True, slots=True)
class ReasonView:
    code: str
    category: str | None
    score: float | None
    message_nl: str
    message_en: str


@dataclass(frozen=True, slots=True)
class QueueItem:
    flag_pk: int
    kind: str
    flag_reason: str
    post_pk: int
    post_id: str
    text: str
    segments: list[Segment]
    reasons: list[ReasonView]
    scores: dict[str, float]  # category -> score of the text check
    categories: frozenset[str]  # categories named by the reasons
    severity: float | None
    attachments: list[AttachmentView]
    author_id: str
    author_role: str
    author_name: str | None
    channel_type: str
    channel_id: str
    channel_name: str | None
    group_id: str | None
    flagged_at: datetime
    posted_at: datetime
    waited_min: float  # wall-clock minutes since the flag opened
    school_min: float  # school minutes since the flag opened
    escalation: str | None  # overdue | threat (stored, or due now)
    detail: dict[str, Any]


def media_details(session: Session, post_pks: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Per post, per attachment id, what the media check stored (faces, hashes, ...)."""
    found: dict[int, dict[str, Any]] = {}
    for score in session.scalars(
        select(Score).where(Score.post_pk.in_(list(post_pks)), Score.check_name == "media")
    ):
        per_attachment = score.result.get("attachments") if score.ok else None
        if isinstance(per_attachment, dict):
            found[score.post_pk] = per_attachment
    return found


def _text_scores(result: dict[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for category, item in (result.get("categories") or {}).items():
        if isinstance(item, dict) and isinstance(item.get("score"), int | float):
            scores[str(category)] = float(item["score"])
    return scores


def _names(
    session: Session,
    model: type[Parent] | type[Staff] | type[Student],
    school_id: str,
    ids: set[str],
) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.execute(
        select(model.external_id, model.name).where(
            model.school_id == school_id, model.external_id.in_(ids)
        )
    )
    return {ext: name for ext, name in rows}


def list_queue(
    *,
    session: Session,
    reviewer: Reviewer,
    filters: QueueFilters | None = None,
    now: datetime | None = None,
    limit: int = QUEUE_LIMIT,
) -> list[QueueItem]:
    """The open flags this reviewer may decide, oldest first."""
    filters = filters or QueueFilters()
    now = now or utcnow()
    query = (
        select(Flag, Post)
        .join(Post, Post.pk == Flag.post_pk)
        .where(
            Flag.school_id == reviewer.school_id,
            Post.school_id == reviewer.school_id,
            Flag.status == OPEN,
        )
        .options(
            selectinload(Post.attachments).load_only(
                Attachment.pk,
                Attachment.external_id,
                Attachment.content_type,
                Attachment.position,
                Attachment.post_pk,
            )
        )
        .order_by(Flag.created_at, Flag.pk)
    )
    if not reviewer.is_admin:
        own: ColumnElement[bool] = Post.group_pk.in_(sorted(reviewer.group_pks))
        if handles_escalations(session, reviewer):
            own = or_(own, Flag.escalated_at.is_not(None))
        query = query.where(own)
    if filters.group_id:
        query = query.join(Group, Group.pk == Post.group_pk).where(
            Group.external_id == filters.group_id
        )
    if filters.author_role:
        query = query.where(Post.author_role == filters.author_role)
    if filters.kind:
        query = query.where(Flag.kind == filters.kind)
    # category and escalation are known only per item (below): read further ahead then
    ahead = limit * 5 if filters.category or filters.escalated_only else limit
    rows = session.execute(query.limit(ahead)).all()
    if not rows:
        return []
    policy = current_policy(session=session, school_id=reviewer.school_id)
    post_pks = [post.pk for _, post in rows]
    decisions: dict[int, list[Decision]] = {pk: [] for pk in post_pks}
    for decision in session.scalars(
        select(Decision).where(Decision.post_pk.in_(post_pks)).order_by(Decision.sequence)
    ):
        decisions[decision.post_pk].append(decision)
    scores = {
        score.post_pk: _text_scores(score.result)
        for score in session.scalars(
            select(Score).where(Score.post_pk.in_(post_pks), Score.check_name == "text")
        )
        if score.ok
    }
    media = media_details(session, post_pks)
    group_pks = {post.group_pk for _, post in rows if post.group_pk is not None}
    groups = (
        {
            pk: (ext, name)
            for pk, ext, name in session.execute(
                select(Group.pk, Group.external_id, Group.name).where(Group.pk.in_(group_pks))
            )
        }
        if group_pks
        else {}
    )
    parents = _names(
        session,
        Parent,
        reviewer.school_id,
        {p.author_id for _, p in rows if p.author_role == "parent"},
    )
    staff = _names(
        session,
        Staff,
        reviewer.school_id,
        {p.author_id for _, p in rows if p.author_role != "parent"},
    )
    students = _names(
        session,
        Student,
        reviewer.school_id,
        {p.channel_id for _, p in rows if p.channel_type == "kindgesprek"},
    )

    items: list[QueueItem] = []
    for flag, post in rows:
        history = decisions.get(post.pk, [])
        latest = history[-1] if history else None
        codes = {str(r.get("code")) for d in history for r in d.reasons or []}
        spans = [
            (int(s), int(e))
            for d in history
            for r in d.reasons or []
            for s, e in r.get("spans", [])
        ]
        reasons = [
            ReasonView(
                code=str(r.get("code")),
                category=r.get("category"),
                score=r.get("score"),
                message_nl=str(r.get("message_nl", "")),
                message_en=str(r.get("message_en", "")),
            )
            for d in history
            if d.decided_by == "auto"
            for r in d.reasons or []
        ]
        categories = frozenset(
            str(r.get("category")) for d in history for r in d.reasons or [] if r.get("category")
        )
        if filters.category and filters.category not in categories:
            continue
        text_scores = scores.get(post.pk, {})
        reason_scores = [r.score for r in reasons if r.score is not None]
        severity = max([*text_scores.values(), *reason_scores], default=None)
        att_actions = {
            str(a.get("id")): str(a.get("action")) for a in (latest.attachments if latest else [])
        }
        created = as_utc(flag.created_at)
        escalation = flag.escalation or (
            due.value if (due := due_escalation(flag, codes, policy, now)) else None
        )
        if filters.escalated_only and escalation is None:
            continue
        group = groups.get(post.group_pk) if post.group_pk is not None else None
        if post.channel_type == "group":
            channel_name = group[1] if group else None
        elif post.channel_type == "kindgesprek":
            channel_name = students.get(post.channel_id)
        else:
            channel_name = None
        author_name = (parents if post.author_role == "parent" else staff).get(post.author_id)
        items.append(
            QueueItem(
                flag_pk=flag.pk,
                kind=flag.kind,
                flag_reason=flag.reason,
                post_pk=post.pk,
                post_id=post.external_id,
                text=post.text,
                segments=segments(post.text, spans),
                reasons=reasons,
                scores=text_scores,
                categories=categories,
                severity=severity,
                attachments=[
                    AttachmentView(
                        pk=a.pk,
                        id=a.external_id,
                        content_type=a.content_type,
                        action=att_actions.get(a.external_id, "hold"),
                        faces=tuple(
                            FaceBox.from_stored(f)
                            for f in stored_faces(media.get(post.pk, {}).get(a.external_id))
                        ),
                    )
                    for a in post.attachments
                ],
                author_id=post.author_id,
                author_role=post.author_role,
                author_name=author_name,
                channel_type=post.channel_type,
                channel_id=post.channel_id,
                channel_name=channel_name,
                group_id=group[0] if group else None,
                flagged_at=created,
                posted_at=as_utc(post.created_at),
                waited_min=max(0.0, (now - created).total_seconds() / 60),
                school_min=policy.school_hours.minutes_between(created, now),
                escalation=escalation,
                detail=dict(flag.detail or {}),
            )
        )
        if len(items) >= limit:
            break
    return items


def reviewer_groups(*, session: Session, reviewer: Reviewer) -> list[tuple[str, str]]:
    """(id, name) of the groups this reviewer may filter on: theirs, or all for admins."""
    query = select(Group.external_id, Group.name).where(Group.school_id == reviewer.school_id)
    if not reviewer.is_admin:
        query = query.where(Group.pk.in_(sorted(reviewer.group_pks)))
    return [(ext, name) for ext, name in session.execute(query.order_by(Group.name))]


# --- the audit trail as a reviewer sees it ----------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditView:
    at: datetime
    actor: str
    action: str
    post_id: str | None
    detail: dict[str, Any]


def recent_audit(*, session: Session, reviewer: Reviewer, limit: int = 100) -> list[AuditView]:
    """The latest audit events this reviewer may see: their groups' posts, or the school."""
    query = (
        select(AuditEvent, Post.external_id)
        .outerjoin(Post, Post.pk == AuditEvent.post_pk)
        .where(AuditEvent.school_id == reviewer.school_id)
        .order_by(AuditEvent.at.desc(), AuditEvent.pk.desc())
        .limit(limit)
    )
    if not reviewer.is_admin:
        query = query.where(
            Post.school_id == reviewer.school_id,
            Post.group_pk.in_(sorted(reviewer.group_pks)),
        )
    return [
        AuditView(
            at=as_utc(event.at),
            actor=event.actor,
            action=event.action,
            post_id=post_id,
            detail=dict(event.detail or {}),
        )
        for event, post_id in session.execute(query)
    ]
