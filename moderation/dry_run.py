"""``moderation policy test``: what the current and a proposed policy decide on a set of
posts, side by side, before the school switches.

Each JSONL line is a post: ``{"text", "channel": "group"|"kindgesprek"|"school",
"author_role": "parent"|"teacher"|"staff", "posted_at": ISO time (optional)}``. Texts are
scored once (the configured text scorer, the privacy and notice detectors) and both
policies decide on the same results.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from moderation.domain import Action, AuthorRole, ChannelType
from moderation.errors import InvalidInput
from moderation.policy import CheckResults, Decision, PostContext, SchoolPolicy, decide

Analyse = Callable[[str], CheckResults]


@dataclass(frozen=True)
class DryRunLine:
    text: str
    context: PostContext
    current: Decision
    proposed: Decision

    @property
    def changed(self) -> bool:
        return self.current.action is not self.proposed.action


def read_posts(path: Path) -> list[tuple[str, PostContext]]:
    posts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            posted = raw.get("posted_at")
            ctx = PostContext(
                channel=ChannelType(raw.get("channel", "group")),
                author_role=AuthorRole(raw.get("author_role", "parent")),
                has_text=bool(str(raw["text"]).strip()),
                posted_at=datetime.fromisoformat(posted) if posted else datetime.now(UTC),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(
                f"{path.name} line {number}: {exc}", code="invalid_post_line"
            ) from exc
        posts.append((str(raw["text"]), ctx))
    return posts


def dry_run(
    posts: Iterable[tuple[str, PostContext]],
    analyse: Analyse,
    current: SchoolPolicy,
    proposed: SchoolPolicy,
) -> list[DryRunLine]:
    out = []
    for text, ctx in posts:
        results = analyse(text)
        out.append(
            DryRunLine(text, ctx, decide(ctx, results, current), decide(ctx, results, proposed))
        )
    return out


def summary(lines: list[DryRunLine]) -> dict[str, dict[str, int]]:
    """Counts per action for each policy, and of moves from one action to another."""
    moves = Counter(
        f"{line.current.action.value} -> {line.proposed.action.value}"
        for line in lines
        if line.changed
    )
    return {
        "current": {a.value: sum(1 for x in lines if x.current.action is a) for a in Action},
        "proposed": {a.value: sum(1 for x in lines if x.proposed.action is a) for a in Action},
        "changes": dict(moves),
    }
