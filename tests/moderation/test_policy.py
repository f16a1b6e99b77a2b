"""The decision is a pure function: table-driven tests over scores and failures."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from moderation.domain import (
    Action,
    AuthorRole,
    Category,
    CategoryScore,
    ChannelType,
    NoticeFinding,
    NoticeKind,
    PrivacyFinding,
    PrivacyKind,
    TextScore,
)
from moderation.errors import InvalidInput
from moderation.policy import (
    DEFAULT_POLICY,
    AttachmentFinding,
    CategoryRule,
    CheckResults,
    ConsentMatchAction,
    PostContext,
    SchoolHours,
    SchoolPolicy,
    decide,
)
from moderation.policy_document import default_document, dump_document, parse_document

MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
CTX = PostContext(ChannelType.GROUP, AuthorRole.PARENT, has_text=True, posted_at=MONDAY_10)


def scores(**values: float) -> TextScore:
    return TextScore(
        "test",
        {Category(k): CategoryScore(Category(k), v, ((0, 4),)) for k, v in values.items()},
    )


@pytest.mark.parametrize(
    ("values", "action", "codes"),
    [
        ({}, Action.RELEASE, []),
        ({"insult": 0.1, "hate": 0.2, "threat": 0.1, "sexual": 0.3}, Action.RELEASE, []),
        ({"insult": 0.6}, Action.HOLD, ["text_insult"]),
        ({"insult": 0.95}, Action.REJECT, ["text_insult"]),
        ({"hate": 0.9}, Action.REJECT, ["text_hate"]),
        ({"sexual": 0.55}, Action.HOLD, ["text_sexual"]),
        # a threat is never auto-rejected: the school must see it
        ({"threat": 0.99}, Action.HOLD, ["text_threat"]),
        ({"threat": 0.99, "insult": 0.9}, Action.REJECT, ["text_insult", "text_threat"]),
        ({"insult": 0.7, "sexual": 0.6}, Action.HOLD, ["text_insult", "text_sexual"]),
    ],
)
def test_text_scores_to_action(values: dict[str, float], action: Action, codes: list[str]):
    decision = decide(CTX, CheckResults(text=scores(**values)), DEFAULT_POLICY)
    assert decision.action is action
    assert [r.code for r in decision.reasons] == codes
    for reason in decision.reasons:
        assert reason.message_nl and reason.message_en
        assert reason.spans == ((0, 4),)
        assert reason.category is not None


def test_failed_or_missing_text_check_holds_the_post():
    for results in (CheckResults(text_failed=True), CheckResults()):
        decision = decide(CTX, results, DEFAULT_POLICY)
        assert decision.action is Action.HOLD
        assert [r.code for r in decision.reasons] == ["scoring_failed"]


def test_attachments_are_decided_one_by_one():
    ctx = PostContext(
        ChannelType.GROUP, AuthorRole.TEACHER, False, MONDAY_10, attachment_ids=("a1", "a2")
    )
    results = CheckResults(media_findings=(AttachmentFinding("a2", "attachment_unreadable"),))
    decision = decide(ctx, results, DEFAULT_POLICY)
    assert decision.action is Action.HOLD
    assert [(a.attachment_id, a.action) for a in decision.attachments] == [
        ("a1", Action.RELEASE),
        ("a2", Action.HOLD),
    ]
    assert decision.reasons[0].code == "attachment_unreadable"


def test_failed_media_check_holds_every_attachment():
    ctx = PostContext(ChannelType.SCHOOL, AuthorRole.STAFF, True, MONDAY_10, attachment_ids=("a",))
    decision = decide(ctx, CheckResults(text=scores(), media_failed=True), DEFAULT_POLICY)
    assert decision.action is Action.HOLD
    assert decision.attachments[0].action is Action.HOLD
    assert [r.code for r in decision.reasons] == ["scoring_failed"]


def test_decide_is_deterministic():
    results = CheckResults(text=scores(insult=0.7, threat=0.5))
    assert decide(CTX, results, DEFAULT_POLICY) == decide(CTX, results, DEFAULT_POLICY)


def test_text_score_round_trips_through_json():
    original = scores(insult=0.7, threat=0.25)
    assert TextScore.from_json(original.to_json()) == original


# --- roles x channels x categories ---------------------------------------------------

ROLES = list(AuthorRole)
CHANNELS = list(ChannelType)


def ctx_for(role: AuthorRole, channel: ChannelType, at: datetime = MONDAY_10) -> PostContext:
    return PostContext(channel, role, has_text=True, posted_at=at)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("category", list(Category))
def test_default_policy_over_roles_channels_and_categories(role, channel, category):
    clear = decide(
        ctx_for(role, channel), CheckResults(text=scores(**{category: 0.95})), DEFAULT_POLICY
    )
    doubtful = decide(
        ctx_for(role, channel), CheckResults(text=scores(**{category: 0.6})), DEFAULT_POLICY
    )
    benign = decide(
        ctx_for(role, channel), CheckResults(text=scores(**{category: 0.3})), DEFAULT_POLICY
    )
    staff = role is not AuthorRole.PARENT
    # threats and staff posts are never auto-rejected
    expected = Action.HOLD if category is Category.THREAT or staff else Action.REJECT
    assert clear.action is expected
    assert doubtful.action is Action.HOLD
    assert benign.action is Action.RELEASE
    assert clear.reasons[0].code == f"text_{category.value}"


def test_first_applicable_rule_decides():
    policy = SchoolPolicy(
        version="t",
        rules={
            Category.INSULT: (
                CategoryRule(0.9, None, channels=frozenset({ChannelType.KINDGESPREK})),
                CategoryRule(0.3, 0.5),
            )
        },
    )
    text = CheckResults(text=scores(insult=0.6))
    assert (
        decide(ctx_for(AuthorRole.PARENT, ChannelType.KINDGESPREK), text, policy).action
        is Action.RELEASE
    )
    assert (
        decide(ctx_for(AuthorRole.PARENT, ChannelType.GROUP), text, policy).action is Action.REJECT
    )
    # a category the policy has no rule for is not judged
    assert decide(CTX, CheckResults(text=scores(threat=0.99)), policy).action is Action.RELEASE


# --- privacy and notices -----------------------------------------------------------------

PHONE = PrivacyFinding(PrivacyKind.PHONE, (10, 21))


@pytest.mark.parametrize(
    ("channel", "action"),
    [
        (ChannelType.GROUP, Action.HOLD),
        (ChannelType.SCHOOL, Action.HOLD),
        (ChannelType.KINDGESPREK, Action.RELEASE),
    ],
)
def test_personal_details_are_held_outside_the_kindgesprek(channel, action):
    results = CheckResults(text=scores(), privacy=(PHONE,))
    decision = decide(ctx_for(AuthorRole.PARENT, channel), results, DEFAULT_POLICY)
    assert decision.action is action
    if action is Action.HOLD:
        assert decision.reasons[0].code == "privacy_phone"
        assert decision.reasons[0].spans == ((10, 21),)
        assert "kindgesprek" in decision.reasons[0].message_nl


def test_notices_release_the_post_with_a_reminder():
    results = CheckResults(
        text=scores(),
        notices=(
            NoticeFinding(NoticeKind.SICK_REPORT, (0, 10)),
            NoticeFinding(NoticeKind.URGENT, (11, 18)),
        ),
    )
    decision = decide(CTX, results, DEFAULT_POLICY)
    assert decision.action is Action.RELEASE
    codes = [n.code for n in decision.notices]
    assert codes == ["sick_report", "urgent"]
    assert "telefonisch" in decision.notices[0].message_nl


def test_message_to_the_teacher_outside_school_hours_says_when_it_is_read():
    friday_evening = datetime(2026, 11, 27, 20, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    ctx = ctx_for(AuthorRole.PARENT, ChannelType.KINDGESPREK, friday_evening)
    decision = decide(ctx, CheckResults(text=scores()), DEFAULT_POLICY)
    assert decision.action is Action.RELEASE
    assert [n.code for n in decision.notices] == ["outside_school_hours"]
    assert "maandag 08:00" in decision.notices[0].message_nl
    # a teacher posting in the evening gets no such notice
    ctx = ctx_for(AuthorRole.TEACHER, ChannelType.GROUP, friday_evening)
    assert decide(ctx, CheckResults(text=scores()), DEFAULT_POLICY).notices == ()


@pytest.mark.parametrize(
    ("local", "is_open", "opening"),
    [
        ("2026-11-30 08:00", True, "2026-11-30 08:00"),  # Monday opening
        ("2026-11-30 07:59", False, "2026-11-30 08:00"),
        ("2026-11-30 16:30", False, "2026-12-01 08:00"),  # closes at 16:30
        ("2026-12-04 17:00", False, "2026-12-07 08:00"),  # Friday evening -> Monday
        ("2026-12-05 12:00", False, "2026-12-07 08:00"),  # Saturday
        ("2026-12-06 23:00", False, "2026-12-07 08:00"),  # Sunday night
    ],
)
def test_school_hours(local, is_open, opening):
    zone = ZoneInfo("Europe/Amsterdam")
    moment = datetime.fromisoformat(local).replace(tzinfo=zone)
    hours = SchoolHours()
    assert hours.is_open(moment) is is_open
    assert hours.next_opening(moment) == datetime.fromisoformat(opening).replace(tzinfo=zone)
    assert hours.is_open(moment.astimezone(UTC)) is is_open  # any time zone in


# --- the policy document -------------------------------------------------------------


def test_default_document_round_trips_to_the_house_policy():
    policy = parse_document(dump_document(default_document())).to_policy("v1")
    assert policy.rules == DEFAULT_POLICY.rules
    assert policy.consent_scopes == DEFAULT_POLICY.consent_scopes
    assert policy.school_hours == DEFAULT_POLICY.school_hours


def test_partial_document_keeps_the_defaults():
    policy = parse_document(
        "categories:\n  insult:\n    - {hold_at: 0.7, reject_at: 0.95}\n"
        "on_consent_match: hold\nschool_hours: {days: [mon, tue, thu, fri], end: '15:00'}\n"
    ).to_policy("v2")
    assert policy.rules[Category.INSULT] == (CategoryRule(0.7, 0.95),)
    assert policy.rules[Category.THREAT] == DEFAULT_POLICY.rules[Category.THREAT]
    assert policy.on_consent_match is ConsentMatchAction.HOLD
    assert policy.school_hours.days == frozenset({0, 1, 3, 4})


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("categories: {insult: [{hold_at: 1.5}]}", "categories.insult.0.hold_at"),
        ("categories: {insult: [{hold_at: 0.8, reject_at: 0.5}]}", "categories.insult.0"),
        ("categories: {insult: [{roles: [parent], hold_at: 0.5}]}", "categories"),
        ("categories: {swearing: [{hold_at: 0.5}]}", "categories.swearing.[key]"),
        ("school_hours: {days: [maandag]}", "school_hours.days"),
        ("school_hours: {start: '17:00', end: '08:00'}", "school_hours"),
        ("retention_days: 0", "retention_days"),
        ("surprise: 1", "surprise"),
    ],
)
def test_invalid_documents_are_refused_with_the_field(text, field):
    with pytest.raises(InvalidInput) as info:
        parse_document(text)
    assert info.value.code == "invalid_policy"
    assert field in [f["field"] for f in info.value.details["fields"]]


def test_not_a_mapping_or_not_yaml():
    for text in ("- just\n- a list", "key: [unclosed"):
        with pytest.raises(InvalidInput):
            parse_document(text)


def test_staff_get_no_reminders():
    results = CheckResults(text=scores(), notices=(NoticeFinding(NoticeKind.SICK_REPORT, (0, 3)),))
    ctx = ctx_for(AuthorRole.TEACHER, ChannelType.GROUP)
    assert decide(ctx, results, DEFAULT_POLICY).notices == ()
