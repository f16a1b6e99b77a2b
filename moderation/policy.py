"""The decision: a pure function of the checks' results, the post's context and the
school's policy.

``decide()`` imports nothing but the domain and the standard library; the worker calls
it once every check of a post has a result, and its output is stored as the post's
automatic decision. The severest action wins (reject > hold > release). Every reason
carries a stable code and an explanation in plain Dutch (for the author) and English;
notices (a sick report, an urgent matter, a message outside school hours) never change
the action: the post is released and the author is reminded.

Defaults follow ``POLICY.md``: swearing, discrimination, threats and sexual messages are
never allowed. A clear case is *rejected* back to the author (who can rephrase); a
doubtful case is *held* for the teacher. Threats are never auto-rejected: the school must
see them. Staff posts are held rather than rejected (a colleague looks first). Personal
details in a group or school-wide channel are held with the advice to use the
kindgesprek. Failing closed: a check that could not run holds the post.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from moderation.domain import (
    Action,
    AuthorRole,
    Category,
    ChannelType,
    NoticeFinding,
    NoticeKind,
    PrivacyFinding,
    PrivacyKind,
    Span,
    TextScore,
)

SEVERITY = {Action.RELEASE: 0, Action.HOLD: 1, Action.REJECT: 2}


class ConsentMatchAction(StrEnum):
    """What to do with a photo showing a child without consent for the audience."""

    BLUR = "blur"  # release a copy with that child's face blurred
    HOLD = "hold"  # hold the post for the teacher


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """At or above ``hold_at`` the post is held; at or above ``reject_at`` rejected.

    A rule applies to the author roles and channels it names (empty: all). A category
    has a list of rules; the first that applies to the post decides.
    """

    hold_at: float
    reject_at: float | None  # None: never auto-rejected, only held
    roles: frozenset[AuthorRole] = frozenset()
    channels: frozenset[ChannelType] = frozenset()

    def applies(self, role: AuthorRole, channel: ChannelType) -> bool:
        return (not self.roles or role in self.roles) and (
            not self.channels or channel in self.channels
        )

    def action(self, score: float) -> Action:
        if self.reject_at is not None and score >= self.reject_at:
            return Action.REJECT
        if score >= self.hold_at:
            return Action.HOLD
        return Action.RELEASE


@dataclass(frozen=True, slots=True)
class SchoolHours:
    """When teachers read messages (POLICY.md rule 7), holidays left out.

    ``holidays`` are closed periods, first and last day included (the school's own
    calendar: autumn, Christmas, spring and summer holidays differ per region).
    """

    days: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    start: time = time(8, 0)
    end: time = time(16, 30)
    timezone: str = "Europe/Amsterdam"
    holidays: tuple[tuple[date, date], ...] = ()

    def is_school_day(self, day: date) -> bool:
        return day.weekday() in self.days and not any(a <= day <= b for a, b in self.holidays)

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        return self.is_school_day(local.date()) and self.start <= local.time() < self.end

    def next_opening(self, moment: datetime) -> datetime:
        """The next moment school opens after ``moment`` (``moment`` itself if open)."""
        if self.is_open(moment):
            return moment
        zone = ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        day = local.date()
        if local.time() >= self.start:
            day += timedelta(days=1)
        for _ in range(400):  # a year of holidays at most
            if self.is_school_day(day):
                return datetime.combine(day, self.start, tzinfo=zone)
            day += timedelta(days=1)
        raise ValueError("school hours name no open day in the coming year")

    def minutes_between(self, start: datetime, end: datetime) -> float:
        """Minutes of school time between two aware moments (0 if ``end`` is not later).

        Counted on the school's clock, so daylight saving time is followed; this is how
        long a held post has waited for a teacher who can read it (escalation).
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("minutes_between needs timezone-aware datetimes")
        zone = ZoneInfo(self.timezone)
        total = timedelta()
        day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
        while day <= last:
            if self.is_school_day(day):
                opens = datetime.combine(day, self.start, tzinfo=zone)
                closes = datetime.combine(day, self.end, tzinfo=zone)
                lo, hi = max(start, opens), min(end, closes)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds() / 60


@dataclass(frozen=True, slots=True)
class SchoolPolicy:
    version: str
    rules: dict[Category, tuple[CategoryRule, ...]]
    consent_scopes: dict[ChannelType, str] = field(
        default_factory=lambda: {
            ChannelType.GROUP: "app",
            ChannelType.KINDGESPREK: "app",
            ChannelType.SCHOOL: "newsletter",
        }
    )
    on_consent_match: ConsentMatchAction = ConsentMatchAction.BLUR
    privacy_actions: dict[ChannelType, Action] = field(
        default_factory=lambda: {
            ChannelType.GROUP: Action.HOLD,
            ChannelType.SCHOOL: Action.HOLD,
            ChannelType.KINDGESPREK: Action.RELEASE,
        }
    )
    escalation_roles: tuple[str, ...] = ("admin",)
    escalation_after_hours: float = 8.5  # school hours a flag may wait: one working day
    school_hours: SchoolHours = field(default_factory=SchoolHours)
    retention_days: int = 30  # texts and images purged this long after the decision
    school_phone_numbers: tuple[str, ...] = ()  # never reported as personal details

    def rule_for(
        self, category: Category, role: AuthorRole, channel: ChannelType
    ) -> CategoryRule | None:
        return next((r for r in self.rules.get(category, ()) if r.applies(role, channel)), None)

    def thresholds(
        self, role: AuthorRole = AuthorRole.PARENT, channel: ChannelType = ChannelType.GROUP
    ) -> dict[Category, float]:
        """The score at which each category counts as flagged, for this author and channel."""
        out = {}
        for cat in Category:
            rule = self.rule_for(cat, role, channel)
            if rule is not None:
                out[cat] = rule.hold_at
        return out


_STAFF = frozenset({AuthorRole.TEACHER, AuthorRole.STAFF})

DEFAULT_POLICY = SchoolPolicy(
    version="default",
    rules={
        Category.INSULT: (
            CategoryRule(0.5, None, roles=_STAFF),
            CategoryRule(0.5, 0.85),
        ),
        Category.HATE: (
            CategoryRule(0.5, None, roles=_STAFF),
            CategoryRule(0.5, 0.85),
        ),
        Category.THREAT: (CategoryRule(0.4, None),),
        Category.SEXUAL: (
            CategoryRule(0.5, None, roles=_STAFF),
            CategoryRule(0.5, 0.85),
        ),
    },
)


@dataclass(frozen=True, slots=True)
class PostContext:
    channel: ChannelType
    author_role: AuthorRole
    has_text: bool
    posted_at: datetime  # when the platform submitted it (for the school-hours notice)
    attachment_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachmentFinding:
    """Something a media check found in one attachment, and what it does to it.

    Most findings hold the attachment for a teacher (the default ``action``). A few carry
    another action: ``image_blocked`` (on the school's block list) rejects the post, and
    ``faces_blurred`` releases it, telling the author that a face was made unrecognisable.
    ``detail`` is for the reviewer and the audit (boxes, labels, matched student ids as
    JSON or text); the author sees only the message of the code.
    """

    attachment_id: str
    code: str  # e.g. image_unreadable, nudity, consent_missing
    detail: str = ""
    action: Action = Action.HOLD

    def to_json(self) -> dict[str, str]:
        return {
            "attachment_id": self.attachment_id,
            "code": self.code,
            "detail": self.detail,
            "action": self.action.value,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AttachmentFinding:
        """A stored finding; one stored before findings had an action holds."""
        return cls(
            attachment_id=str(raw["attachment_id"]),
            code=str(raw["code"]),
            detail=str(raw.get("detail", "")),
            action=Action(raw.get("action", Action.HOLD.value)),
        )


@dataclass(frozen=True, slots=True)
class CheckResults:
    """What the workers found; ``text=None`` for a text check that did not run."""

    text: TextScore | None = None
    text_failed: bool = False
    privacy: tuple[PrivacyFinding, ...] = ()
    notices: tuple[NoticeFinding, ...] = ()
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
class Notice:
    """A reminder for the author; the post is released all the same."""

    code: str
    message_nl: str
    message_en: str


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
    notices: tuple[Notice, ...] = ()
    policy_version: str = DEFAULT_POLICY.version


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

_PRIVACY_WHAT: dict[PrivacyKind, tuple[str, str]] = {
    PrivacyKind.PHONE: ("een telefoonnummer", "a phone number"),
    PrivacyKind.EMAIL: ("een e-mailadres", "an e-mail address"),
    PrivacyKind.ADDRESS: ("een adres", "an address"),
    PrivacyKind.BSN: ("een burgerservicenummer", "a citizen service number (BSN)"),
    PrivacyKind.IBAN: ("een rekeningnummer", "a bank account number"),
    PrivacyKind.CHILD_HEALTH: (
        "informatie over de gezondheid van een kind",
        "information about a child's health",
    ),
    PrivacyKind.CHILD_BEHAVIOUR: (
        "informatie over het gedrag van een kind",
        "information about a child's behaviour",
    ),
    PrivacyKind.CHILD_FAMILY: (
        "informatie over de thuissituatie van een kind",
        "information about a child's family situation",
    ),
}

SCORING_FAILED = Reason(
    code="scoring_failed",
    message_nl="Je bericht kon niet automatisch worden gecontroleerd en wordt eerst door "
    "de school bekeken.",
    message_en="Your message could not be checked automatically; the school will review it first.",
)

# Messages per attachment finding code, Dutch for the author and English. ``{scope}`` is
# the audience the consent is needed for (``_SCOPE_WORDS``: "de app", "de nieuwsbrief").
_ATTACHMENT_MESSAGES: dict[str, tuple[str, str]] = {
    "image_unreadable": (
        "Een foto kon niet worden gelezen en wordt eerst door de school bekeken.",
        "A photo could not be read; the school will review it first.",
    ),
    "consent_missing": (
        "Op deze foto staat een kind zonder toestemming voor foto's in {scope}. De school "
        "bekijkt de foto eerst.",
        "This photo shows a child without consent for photos in {scope}. The school will "
        "review it first.",
    ),
    "faces_undecidable": (
        "Op deze foto staan gezichten die we niet zeker kunnen herkennen, en niet elk kind "
        "heeft toestemming voor foto's in {scope}. De school bekijkt de foto eerst.",
        "Some faces in this photo cannot be recognised with certainty, and not every child "
        "has consent for photos in {scope}. The school will review it first.",
    ),
    "faces_blurred": (
        "Op deze foto stond een kind zonder toestemming voor foto's in {scope}. Dat gezicht "
        "is onherkenbaar gemaakt; zo is de foto geplaatst.",
        "This photo showed a child without consent for photos in {scope}. That face was "
        "made unrecognisable, and the photo was posted that way.",
    ),
    "video_consent": (
        "In deze video staat mogelijk een kind zonder toestemming voor beeld in {scope}. Een "
        "video kan niet automatisch onherkenbaar worden gemaakt; de school bekijkt hem eerst.",
        "This video may show a child without consent for images in {scope}. A video cannot "
        "be blurred automatically; the school will review it first.",
    ),
    "nudity": (
        "Op deze foto of video is mogelijk bloot te zien. De school bekijkt hem eerst.",
        "This photo or video may show nudity. The school will review it first.",
    ),
    "image_removed": (
        "Deze foto lijkt op een foto die de school eerder heeft verwijderd. De school bekijkt "
        "hem eerst.",
        "This photo looks like one the school removed before. The school will review it first.",
    ),
    "image_blocked": (
        "Deze foto mag volgens de school niet worden gedeeld. Je bericht is niet geplaatst; "
        "stuur het opnieuw zonder deze foto.",
        "The school does not allow this photo to be shared. Your message was not posted; "
        "send it again without this photo.",
    ),
    "video_unreadable": (
        "Een video kon niet worden gelezen en wordt eerst door de school bekeken.",
        "A video could not be read; the school will review it first.",
    ),
}
# How a consent scope reads in a message (the scopes of ``moderation.schemas.ConsentScope``);
# a scope a school names otherwise is shown as it is.
_SCOPE_WORDS: dict[str, tuple[str, str]] = {
    "app": ("de app", "the app"),
    "newsletter": ("de nieuwsbrief", "the newsletter"),
    "school_guide": ("de schoolgids", "the school guide"),
    "website": ("de website", "the website"),
    "social_media": ("sociale media", "social media"),
}
_ATTACHMENT_DEFAULT = (
    "Een bijlage wordt eerst door de school bekeken.",
    "An attachment will be reviewed by the school first.",
)

NOTICE_SICK = Notice(
    code=NoticeKind.SICK_REPORT.value,
    message_nl="Ziekmelden doe je altijd telefonisch bij de administratie. Je bericht is "
    "geplaatst, maar bel de school ook even.",
    message_en="Sick reports are always made by phone to the school office. Your message "
    "was posted, but please call the school as well.",
)
NOTICE_URGENT = Notice(
    code=NoticeKind.URGENT.value,
    message_nl="Berichten in de app worden niet meteen gelezen. Is het dringend? Bel dan "
    "de administratie.",
    message_en="Messages in the app are not read at once. Is it urgent? Please call the "
    "school office.",
)


def _outside_hours_notice(hours: SchoolHours, posted_at: datetime) -> Notice:
    opening = hours.next_opening(posted_at)
    days_nl = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]
    days_en = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    at = opening.strftime("%H:%M")
    return Notice(
        code="outside_school_hours",
        message_nl="De leerkracht leest berichten op schooldagen tussen "
        f"{hours.start:%H:%M} en {hours.end:%H:%M}. Je bericht wordt vanaf "
        f"{days_nl[opening.weekday()]} {at} gelezen.",
        message_en="Teachers read messages on school days between "
        f"{hours.start:%H:%M} and {hours.end:%H:%M}. Your message will be read from "
        f"{days_en[opening.weekday()]} {at}.",
    )


def _text_reasons(
    ctx: PostContext, score: TextScore, policy: SchoolPolicy
) -> list[tuple[Action, Reason]]:
    out: list[tuple[Action, Reason]] = []
    for cat in Category:
        rule = policy.rule_for(cat, ctx.author_role, ctx.channel)
        cs = score.get(cat)
        if rule is None or (action := rule.action(cs.score)) is Action.RELEASE:
            continue
        nl, en = _TEXT_MESSAGES[cat]
        reason = Reason(
            code=f"text_{cat.value}",
            category=cat,
            score=round(cs.score, 4),
            spans=cs.spans,
            message_nl=nl,
            message_en=en,
        )
        out.append((action, reason))
    return out


def _privacy_reasons(
    ctx: PostContext, findings: tuple[PrivacyFinding, ...], policy: SchoolPolicy
) -> list[tuple[Action, Reason]]:
    action = policy.privacy_actions.get(ctx.channel, Action.HOLD)
    if action is Action.RELEASE or not findings:
        return []
    out: list[tuple[Action, Reason]] = []
    for kind in dict.fromkeys(f.kind for f in findings):
        what_nl, what_en = _PRIVACY_WHAT[kind]
        spans = tuple(f.span for f in findings if f.kind is kind)
        out.append(
            (
                action,
                Reason(
                    code=f"privacy_{kind.value}",
                    spans=spans,
                    message_nl=f"Je bericht bevat {what_nl}. Persoonlijke zaken bespreek je "
                    "niet in de groep maar via het kindgesprek met de leerkracht.",
                    message_en=f"Your message contains {what_en}. Personal matters belong "
                    "in the private conversation with the teacher, not in the group.",
                ),
            )
        )
    return out


def _attachment_decisions(
    ctx: PostContext, results: CheckResults, policy: SchoolPolicy
) -> list[AttachmentDecision]:
    """Each attachment takes the severest action of its findings (release without any)."""
    scope = policy.consent_scopes.get(ctx.channel, "")
    scope_nl, scope_en = _SCOPE_WORDS.get(scope, (scope, scope))
    by_id: dict[str, list[tuple[Action, Reason]]] = {a: [] for a in ctx.attachment_ids}
    for finding in results.media_findings:
        nl, en = _ATTACHMENT_MESSAGES.get(finding.code, _ATTACHMENT_DEFAULT)
        reason = Reason(
            code=finding.code,
            message_nl=nl.format(scope=scope_nl),
            message_en=en.format(scope=scope_en),
        )
        found = by_id.setdefault(finding.attachment_id, [])
        if (finding.action, reason) not in found:
            found.append((finding.action, reason))
    if results.media_failed:
        for found in by_id.values():
            found.append((Action.HOLD, SCORING_FAILED))
    decisions = []
    for aid, found in by_id.items():
        action = max((a for a, _ in found), key=SEVERITY.__getitem__, default=Action.RELEASE)
        decisions.append(AttachmentDecision(aid, action, tuple(r for _, r in found)))
    return decisions


def _notices(ctx: PostContext, results: CheckResults, policy: SchoolPolicy) -> list[Notice]:
    """Reminders for parents; a teacher's "Sem is ziek, beterschap!" needs none."""
    if ctx.author_role is not AuthorRole.PARENT:
        return []
    kinds = {n.kind for n in results.notices}
    notices = []
    if NoticeKind.SICK_REPORT in kinds:
        notices.append(NOTICE_SICK)
    if NoticeKind.URGENT in kinds:
        notices.append(NOTICE_URGENT)
    writes_to_teacher = ctx.channel in (ChannelType.KINDGESPREK, ChannelType.GROUP)
    if writes_to_teacher and not policy.school_hours.is_open(ctx.posted_at):
        notices.append(_outside_hours_notice(policy.school_hours, ctx.posted_at))
    return notices


def decide(ctx: PostContext, results: CheckResults, policy: SchoolPolicy) -> Decision:
    """The automatic decision for one post. Pure: same inputs, same decision."""
    actions: list[tuple[Action, Reason]] = []
    if ctx.has_text:
        if results.text_failed or results.text is None:
            actions.append((Action.HOLD, SCORING_FAILED))
        else:
            actions.extend(_text_reasons(ctx, results.text, policy))
            actions.extend(_privacy_reasons(ctx, results.privacy, policy))
    attachments = _attachment_decisions(ctx, results, policy)
    for att in attachments:
        actions.extend((att.action, reason) for reason in att.reasons)
    notices = tuple(_notices(ctx, results, policy))
    if not actions:
        return Decision(Action.RELEASE, (), tuple(attachments), notices, policy.version)
    action = max((a for a, _ in actions), key=SEVERITY.__getitem__)
    reasons: list[Reason] = []
    for _, reason in sorted(actions, key=lambda ar: -SEVERITY[ar[0]]):
        if reason not in reasons:
            reasons.append(reason)
    return Decision(action, tuple(reasons), tuple(attachments), notices, policy.version)
