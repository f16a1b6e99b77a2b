"""The decision is a pure function: table-driven tests over scores and failures."""

from __future__ import annotations

import pytest

from moderation.domain import Action, AuthorRole, Category, CategoryScore, ChannelType, TextScore
from moderation.policy import (
    DEFAULT_POLICY,
    AttachmentFinding,
    CheckResults,
    PostContext,
    decide,
)

CTX = PostContext(ChannelType.GROUP, AuthorRole.PARENT, has_text=True)


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
        ChannelType.GROUP, AuthorRole.TEACHER, has_text=False, attachment_ids=("a1", "a2")
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
    ctx = PostContext(ChannelType.SCHOOL, AuthorRole.STAFF, has_text=True, attachment_ids=("a",))
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
