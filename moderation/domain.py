"""Plain domain objects shared by the API, the policy, the workers and the scorers.

This module imports nothing from FastAPI, SQLAlchemy, Celery or torch, so that the
decision (``moderation.policy``) is a pure function over these objects and every
scorer in ``models/`` can depend on it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Category(StrEnum):
    """What the school policy forbids in text (POLICY.md rule 3)."""

    INSULT = "insult"  # swearing at or insulting a person, shaming a child
    HATE = "hate"  # discrimination against a group
    THREAT = "threat"  # threats of violence or harm, intimidation
    SEXUAL = "sexual"  # explicit, harassing or suggestive


class Action(StrEnum):
    """The three outcomes of the gate."""

    RELEASE = "release"
    HOLD = "hold"
    REJECT = "reject"


class PostStatus(StrEnum):
    """Where a post stands; ``pending`` until exactly one final decision is stored."""

    PENDING = "pending"
    RELEASED = "released"
    HELD = "held"
    REJECTED = "rejected"


ACTION_TO_STATUS: dict[Action, PostStatus] = {
    Action.RELEASE: PostStatus.RELEASED,
    Action.HOLD: PostStatus.HELD,
    Action.REJECT: PostStatus.REJECTED,
}


class ChannelType(StrEnum):
    GROUP = "group"  # the class group: all parents of the class read it
    KINDGESPREK = "kindgesprek"  # 1:1 between one parent and the teacher
    SCHOOL = "school"  # school-wide messages (newsletter)


class AuthorRole(StrEnum):
    PARENT = "parent"
    TEACHER = "teacher"
    STAFF = "staff"


Span = tuple[int, int]  # [start, end) character offsets into the post text


@dataclass(frozen=True, slots=True)
class CategoryScore:
    """One category's calibrated score in [0, 1] and the spans that drove it."""

    category: Category
    score: float
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class TextScore:
    """What one text scorer says about one text: a score for every category."""

    scorer: str
    categories: dict[Category, CategoryScore] = field(default_factory=dict)

    def get(self, category: Category) -> CategoryScore:
        return self.categories.get(category, CategoryScore(category, 0.0))

    def to_json(self) -> dict[str, object]:
        return {
            "scorer": self.scorer,
            "categories": {
                cat.value: {"score": cs.score, "spans": [list(s) for s in cs.spans]}
                for cat, cs in self.categories.items()
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TextScore:
        return cls(
            scorer=str(raw["scorer"]),
            categories={
                Category(cat): CategoryScore(
                    Category(cat),
                    float(item["score"]),
                    tuple((int(s), int(e)) for s, e in item["spans"]),
                )
                for cat, item in raw["categories"].items()
            },
        )

    def above(self, thresholds: dict[Category, float]) -> list[CategoryScore]:
        """The categories whose score reaches their threshold, highest first."""
        hits = [
            cs
            for cat, cs in self.categories.items()
            if cat in thresholds and cs.score >= thresholds[cat]
        ]
        return sorted(hits, key=lambda cs: cs.score, reverse=True)


@runtime_checkable
class TextScorer(Protocol):
    """The one interface every text scorer implements (lexicon, trained model, fake).

    ``score`` takes a batch so that a model can run it in one forward pass; it returns
    one :class:`TextScore` per input text, in order.
    """

    name: str

    def score(self, texts: Sequence[str]) -> list[TextScore]: ...


class PrivacyKind(StrEnum):
    """Personal information that does not belong in a group or school channel (rule 5)."""

    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    BSN = "bsn"  # Dutch citizen service number (passes the 11-test)
    IBAN = "iban"
    CHILD_HEALTH = "child_health"  # illness, diagnosis, medication of a named child
    CHILD_BEHAVIOUR = "child_behaviour"  # behaviour problems, incidents, punishment
    CHILD_FAMILY = "child_family"  # divorce, custody, youth care, finances at home


class NoticeKind(StrEnum):
    """What the policy reminds an author of, while still releasing the post (rules 7, 8)."""

    SICK_REPORT = "sick_report"  # also phone the administration
    URGENT = "urgent"  # call the administration, the app is not read at once


@dataclass(frozen=True, slots=True)
class PrivacyFinding:
    kind: PrivacyKind
    span: Span


@dataclass(frozen=True, slots=True)
class NoticeFinding:
    kind: NoticeKind
    span: Span


@dataclass(frozen=True, slots=True)
class ChildConsent:
    """One student of the school, as the photo check sees them for one audience scope.

    ``consented`` is true only if every parent's latest answer for the scope is yes; a
    child with no answer at all has no consent ("no" wins, and silence is not a yes).
    ``references`` are the enrolled face descriptors (128 floats each); empty when the
    child was never enrolled. Built by ``moderation.storage.references`` and read by
    ``moderation.photo_check``.
    """

    student_id: str
    consented: bool
    in_group: bool  # the student belongs to the post's group
    references: tuple[Sequence[float], ...] = ()
