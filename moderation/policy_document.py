"""A school's policy as a document (YAML or JSON) and its conversion to ``SchoolPolicy``.

The document is what administrators edit (``moderation policy set``, ``PUT /v1/policy``)
and what is stored, versioned, per school. Anything left out takes the default of
``moderation.policy.DEFAULT_POLICY``. Validation refuses a policy that would leave a
category unchecked for some author or channel: each category's last rule must apply to
everyone.

Example (the defaults, written out)::

    categories:
      insult:
        - {roles: [teacher, staff], hold_at: 0.5, reject_at: null}
        - {hold_at: 0.5, reject_at: 0.85}
      threat:
        - {hold_at: 0.4, reject_at: null}
    consent_scopes: {group: app, kindgesprek: app, school: newsletter}
    on_consent_match: blur
    privacy_actions: {group: hold, school: hold, kindgesprek: release}
    escalation: {roles: [admin], after_school_hours: 8.5}
    school_hours:
      days: [mon, tue, wed, thu, fri]
      start: "08:00"
      end: "16:30"
      holidays:
        - {name: kerstvakantie, start: 2026-12-19, end: 2027-01-03}
    retention_days: 30
    school_phone_numbers: ["0299-123456"]
"""

from __future__ import annotations

import json
from datetime import date, time
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moderation.domain import Action, AuthorRole, Category, ChannelType
from moderation.errors import InvalidInput
from moderation.policy import (
    DEFAULT_POLICY,
    CategoryRule,
    ConsentMatchAction,
    SchoolHours,
    SchoolPolicy,
)
from moderation.schemas import ConsentScope

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Score = Annotated[float, Field(ge=0, le=1)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleDoc(_Doc):
    """One rule of a category; the first rule that applies to the post decides."""

    roles: list[AuthorRole] = Field(default_factory=list)
    channels: list[ChannelType] = Field(default_factory=list)
    hold_at: Score
    reject_at: Score | None = None

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.reject_at is not None and self.reject_at < self.hold_at:
            raise ValueError("reject_at must not be below hold_at")
        return self


class EscalationDoc(_Doc):
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_POLICY.escalation_roles))
    after_school_hours: float = Field(default=DEFAULT_POLICY.escalation_after_hours, gt=0)


class HolidayDoc(_Doc):
    """A period the school is closed, first and last day included."""

    name: str = Field(default="", max_length=100)
    start: date
    end: date

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.end < self.start:
            raise ValueError("a holiday must not end before it starts")
        return self


class SchoolHoursDoc(_Doc):
    days: list[str] = Field(default_factory=lambda: list(DAYS[:5]), min_length=1)
    start: time = DEFAULT_POLICY.school_hours.start
    end: time = DEFAULT_POLICY.school_hours.end
    timezone: str = DEFAULT_POLICY.school_hours.timezone
    holidays: list[HolidayDoc] = Field(default_factory=list, max_length=100)

    @field_validator("days")
    @classmethod
    def _days(cls, days: list[str]) -> list[str]:
        bad = [d for d in days if d.lower()[:3] not in DAYS]
        if bad:
            raise ValueError(f"unknown days {bad}; use {', '.join(DAYS)}")
        return [d.lower()[:3] for d in days]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}") from exc
        return zone

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.end <= self.start:
            raise ValueError("school hours must end after they start")
        return self


class PolicyDocument(_Doc):
    """What a school may set; everything is optional and defaults to the house policy."""

    categories: dict[Category, list[RuleDoc]] = Field(default_factory=dict)
    consent_scopes: dict[ChannelType, ConsentScope] = Field(default_factory=dict)
    on_consent_match: ConsentMatchAction = DEFAULT_POLICY.on_consent_match
    privacy_actions: dict[ChannelType, Action] = Field(default_factory=dict)
    escalation: EscalationDoc = Field(default_factory=EscalationDoc)
    school_hours: SchoolHoursDoc = Field(default_factory=SchoolHoursDoc)
    retention_days: int = Field(default=DEFAULT_POLICY.retention_days, ge=1, le=3650)
    school_phone_numbers: list[str] = Field(default_factory=list)

    @field_validator("categories")
    @classmethod
    def _catch_all(cls, cats: dict[Category, list[RuleDoc]]) -> dict[Category, list[RuleDoc]]:
        for cat, rules in cats.items():
            if not rules or rules[-1].roles or rules[-1].channels:
                raise ValueError(
                    f"{cat.value}: the last rule must name no roles or channels, so that "
                    "every post is checked"
                )
        return cats

    def to_policy(self, version: str) -> SchoolPolicy:
        rules = dict(DEFAULT_POLICY.rules)
        for cat, docs in self.categories.items():
            rules[cat] = tuple(
                CategoryRule(d.hold_at, d.reject_at, frozenset(d.roles), frozenset(d.channels))
                for d in docs
            )
        return SchoolPolicy(
            version=version,
            rules=rules,
            consent_scopes={
                **DEFAULT_POLICY.consent_scopes,
                **{ch: scope.value for ch, scope in self.consent_scopes.items()},
            },
            on_consent_match=self.on_consent_match,
            privacy_actions={**DEFAULT_POLICY.privacy_actions, **self.privacy_actions},
            escalation_roles=tuple(self.escalation.roles),
            escalation_after_hours=self.escalation.after_school_hours,
            school_hours=SchoolHours(
                days=frozenset(DAYS.index(d) for d in self.school_hours.days),
                start=self.school_hours.start,
                end=self.school_hours.end,
                timezone=self.school_hours.timezone,
                holidays=tuple((h.start, h.end) for h in self.school_hours.holidays),
            ),
            retention_days=self.retention_days,
            school_phone_numbers=tuple(self.school_phone_numbers),
        )


def default_document() -> dict[str, Any]:
    """The house policy written out in full, as a starting point for a school's own."""
    doc = PolicyDocument(
        categories={
            cat: [
                RuleDoc(
                    roles=sorted(r.roles),
                    channels=sorted(r.channels),
                    hold_at=r.hold_at,
                    reject_at=r.reject_at,
                )
                for r in rules
            ]
            for cat, rules in DEFAULT_POLICY.rules.items()
        },
        consent_scopes={ch: ConsentScope(s) for ch, s in DEFAULT_POLICY.consent_scopes.items()},
        privacy_actions=dict(DEFAULT_POLICY.privacy_actions),
    )
    return doc.model_dump(mode="json")


def parse_document(raw: str | bytes | dict[str, Any]) -> PolicyDocument:
    """Read a policy from YAML or JSON text (or a parsed dict); InvalidInput on error."""
    try:
        data = raw if isinstance(raw, dict) else yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"the policy is not valid YAML or JSON: {exc}", code="invalid_policy"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("the policy must be a mapping", code="invalid_policy")
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        raise InvalidInput(
            f"the policy is not valid: {summary}", code="invalid_policy", fields=problems
        ) from exc


def dump_document(doc: dict[str, Any], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
