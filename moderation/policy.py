"""The decision: a pure function of the scores, the post's context and the school policy.

``decide()`` imports nothing but the domain; it is called by the worker once every check
of a post has a result, and its output is stored as the post's automatic decision. The
severest action wins (reject > hold > release). Every reason carries a stable code and an
explanation in plain Dutch (for the author) and English.

Defaults follow ``POLICY.md``: swearing, discrimination, threats and sexual messages are
never allowed. A clear case is *rejected* back to the author (who can rephrase); a
doubtful case is *held* for the teacher. Threats are never auto-rejected: the school must
see them, so they are held. Failing closed: a check that could not run holds the post.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moderation.domain import (
    Action,
    AuthorRole,
    Category,
    ChannelType,
    Span,
    TextScore,
)

SEVERITY = {Action.RELEASE: 0, Action.HOLD: 1, Action.REJECT: 2}


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """At or above ``hold_at`` the post is held; at or above ``reject_at`` rejected."""

    hold_at: float
    reject_at: float | None  # None: never auto-rejected, only held


@dataclass(frozen=True, slots=True)
class SchoolPolicy:
    version: str
    rules: dict[Category, CategoryRule]

    def thresholds(self) -> dict[Category, float]:
        """The score at which each category counts as flagged."""
        return {cat: rule.hold_at for cat, rule in self.rules.items()}


DEFAULT_POLICY = SchoolPolicy(
    version="default-1",
    rules={
        Category.INSULT: CategoryRule(hold_at=0.5, reject_at=0.85),
        Category.HATE: CategoryRule(hold_at=0.5, reject_at=0.85),
        Category.THREAT: CategoryRule(hold_at=0.4, reject_at=None),
        Category.SEXUAL: CategoryRule(hold_at=0.5, reject_at=0.85),
    },
)


@dataclass(frozen=True, slots=True)
class PostContext:
    channel: ChannelType
    author_role: AuthorRole
    has_text: bool
    attachment_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachmentFinding:
    """Something a media check found in one attachment that keeps it from release."""

    attachment_id: str
    code: str  # e.g. attachment_unreadable, image_too_large
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckResults:
    """What the workers found; ``None`` for a check that was not needed."""

    text: TextScore | None = None
    text_failed: bool = False
    media_findings: tuple[AttachmentFinding, ...] = ()
    media_failed: bool = False


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message_nl: str
    message_en: str
    category: Category | None = None
    score: float | None = None
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachmentDecision:
    attachment_id: str
    action: Action
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reasons: tuple[Reason, ...] = ()
    attachments: tuple[AttachmentDecision, ...] = ()
    policy_version: str = field(default=DEFAULT_POLICY.version)


_TEXT_MESSAGES: dict[Category, tuple[str, str]] = {
    Category.INSULT: (
        "Je bericht bevat scheldwoorden of beledigende taal. Schelden is volgens de "
        "afspraken van de school niet toegestaan. Pas je bericht aan en probeer het opnieuw.",
        "Your message contains swearing or insulting language, which the school's rules "
        "do not allow. Please rephrase it and try again.",
    ),
    Category.HATE: (
        "Je bericht bevat taal die discrimineert. Discriminatie is volgens de afspraken "
        "van de school nooit toegestaan. Pas je bericht aan.",
        "Your message contains discriminatory language, which the school's rules never "
        "allow. Please rephrase it.",
    ),
    Category.THREAT: (
        "Je bericht lijkt een bedreiging te bevatten. Het wordt eerst bekeken door de "
        "school. Is er iets dringends? Bel dan de administratie.",
        "Your message appears to contain a threat. The school will review it first. "
        "Is something urgent? Please call the school office.",
    ),
    Category.SEXUAL: (
        "Je bericht bevat seksueel getinte taal. Dat is volgens de afspraken van de "
        "school niet toegestaan. Pas je bericht aan.",
        "Your message contains sexually suggestive language, which the school's rules "
        "do not allow. Please rephrase it.",
    ),
}

SCORING_FAILED = Reason(
    code="scoring_failed",
    message_nl="Je bericht kon niet automatisch worden gecontroleerd en wordt eerst door "
    "de school bekeken.",
    message_en="Your message could not be checked automatically; the school will review it first.",
)

_ATTACHMENT_MESSAGES: dict[str, tuple[str, str]] = {
    "attachment_unreadable": (
        "Een bijlage kon niet worden gelezen en wordt eerst door de school bekeken.",
        "An attachment could not be read; the school will review it first.",
    ),
}
_ATTACHMENT_DEFAULT = (
    "Een bijlage wordt eerst door de school bekeken.",
    "An attachment will be reviewed by the school first.",
)


def _text_reasons(score: TextScore, policy: SchoolPolicy) -> list[tuple[Action, Reason]]:
    out: list[tuple[Action, Reason]] = []
    for cs in score.above(policy.thresholds()):
        rule = policy.rules[cs.category]
        action = (
            Action.REJECT
            if rule.reject_at is not None and cs.score >= rule.reject_at
            else Action.HOLD
        )
        nl, en = _TEXT_MESSAGES[cs.category]
        reason = Reason(
            code=f"text_{cs.category.value}",
            category=cs.category,
            score=round(cs.score, 4),
            spans=cs.spans,
            message_nl=nl,
            message_en=en,
        )
        out.append((action, reason))
    return out


def _attachment_decisions(ctx: PostContext, results: CheckResults) -> list[AttachmentDecision]:
    by_id: dict[str, list[Reason]] = {a: [] for a in ctx.attachment_ids}
    for finding in results.media_findings:
        nl, en = _ATTACHMENT_MESSAGES.get(finding.code, _ATTACHMENT_DEFAULT)
        by_id.setdefault(finding.attachment_id, []).append(
            Reason(code=finding.code, message_nl=nl, message_en=en)
        )
    if results.media_failed:
        for reasons in by_id.values():
            reasons.append(SCORING_FAILED)
    return [
        AttachmentDecision(aid, Action.HOLD if reasons else Action.RELEASE, tuple(reasons))
        for aid, reasons in by_id.items()
    ]


def decide(ctx: PostContext, results: CheckResults, policy: SchoolPolicy) -> Decision:
    """The automatic decision for one post. Pure: same inputs, same decision."""
    actions: list[tuple[Action, Reason]] = []
    if ctx.has_text:
        if results.text_failed or results.text is None:
            actions.append((Action.HOLD, SCORING_FAILED))
        else:
            actions.extend(_text_reasons(results.text, policy))
    attachments = _attachment_decisions(ctx, results)
    for att in attachments:
        for reason in att.reasons:
            actions.append((att.action, reason))
    if not actions:
        return Decision(Action.RELEASE, (), tuple(attachments), policy.version)
    action = max((a for a, _ in actions), key=SEVERITY.__getitem__)
    reasons: list[Reason] = []
    for _, reason in sorted(actions, key=lambda ar: -SEVERITY[ar[0]]):
        if reason not in reasons:
            reasons.append(reason)
    return Decision(action, tuple(reasons), tuple(attachments), policy.version)
