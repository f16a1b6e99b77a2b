"""The triggering spans of a post as segments a template can render safely.

The post text is hostile: the template escapes every segment and wraps only the marked
ones in ``<mark>``; nothing here produces HTML. Spans come from the decision reasons
(``[start, end)`` character offsets); they are clipped to the text, and overlapping or
touching spans are merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    marked: bool


def merge_spans(spans: Iterable[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Clip to ``[0, length)``, drop empty spans, merge overlapping and touching ones."""
    clipped = sorted(
        (max(0, start), min(length, end)) for start, end in spans if min(length, end) > start
    )
    merged: list[tuple[int, int]] = []
    for start, end in clipped:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def segments(text: str, spans: Iterable[tuple[int, int]]) -> list[Segment]:
    """The text cut into plain and marked segments, in order; joined, they give the text."""
    out: list[Segment] = []
    at = 0
    for start, end in merge_spans(spans, len(text)):
        if start > at:
            out.append(Segment(text[at:start], False))
        out.append(Segment(text[start:end], True))
        at = end
    if at < len(text):
        out.append(Segment(text[at:], False))
    return out
