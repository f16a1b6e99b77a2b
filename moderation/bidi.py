"""What a reader sees: the display order of a text that carries bidirectional controls.

A right-to-left override (U+202E) makes an app draw the characters after it from right
to left, so ``"\\u202efujreknak"`` is stored as "fujreknak" and read as "kankerjuf".
The scorers read the stored (logical) order and miss it; this module gives them the
display order as well (``workers.pipeline.analyse_text`` scores both), with a map back
to the stored characters, so spans still point at the text as sent (Trojan Source,
CVE-2021-42574, is the same trick in source code).

:func:`display_order` follows the Unicode Bidirectional Algorithm (UAX #9) where it
decides the order of letters: the paragraph level from the first strong character
(P2, P3); explicit embeddings, overrides and isolates with their stack (X1-X8); the
neutrals between letters of one direction (N1, N2, within runs of one level); the
implicit levels (I1, I2); and the reordering of runs from the highest level down (L2),
one line at a time. Left out: the weak-type rules (W1-W7), which move digits and
number separators next to Arabic letters, and isolating run sequences spanning an
isolate (a run ends at it). Embedding and override controls are not in the display
text (X9).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace

from moderation.domain import CategoryScore, PrivacyFinding, TextScore

LRE, RLE, PDF, LRO, RLO = "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"
LRI, RLI, FSI, PDI = "\u2066", "\u2067", "\u2068", "\u2069"
CONTROLS = frozenset({LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI})
MAX_DEPTH = 125  # UAX #9 BD2: deeper embeddings are ignored
_LINE_BREAKS = frozenset("\n\r\u2029\x1c\x1d\x1e\x85")


@dataclass(frozen=True, slots=True)
class DisplayText:
    """The text in the order it is drawn; ``origin[i]`` is the stored index of ``text[i]``."""

    text: str
    origin: tuple[int, ...]

    def logical_span(self, start: int, end: int) -> tuple[int, int]:
        """The smallest span of the stored text holding display characters [start, end)."""
        indices = self.origin[start:end]
        return (min(indices), max(indices) + 1) if indices else (0, 0)


def has_controls(text: str) -> bool:
    """Whether any explicit bidirectional control is in the text (the cheap test)."""
    return not CONTROLS.isdisjoint(text)


def _strong(char: str) -> str | None:
    kind = unicodedata.bidirectional(char)
    if kind == "L":
        return "L"
    if kind in ("R", "AL"):
        return "R"
    if kind in ("EN", "AN"):
        return kind
    return None


def _paragraph_level(line: str) -> int:
    """P2, P3: 1 if the first strong character outside isolates is right-to-left."""
    isolates = 0
    for char in line:
        if char in (LRI, RLI, FSI):
            isolates += 1
        elif char == PDI:
            isolates = max(0, isolates - 1)
        elif isolates == 0 and _strong(char) in ("L", "R"):
            return 1 if _strong(char) == "R" else 0
    return 0


def _isolate_is_rtl(rest: str) -> bool:
    """FSI: right-to-left if the isolated text's first strong character is (up to its PDI)."""
    depth = 0
    for index, char in enumerate(rest):
        if char in (LRI, RLI, FSI):
            depth += 1
        elif char == PDI:
            if depth == 0:
                return _paragraph_level(rest[:index]) == 1
            depth -= 1
    return _paragraph_level(rest) == 1


def _explicit(line: str) -> list[tuple[int, str | None] | None]:
    """X1-X9: each character's embedding level and strong type ("L", "R", "EN", "AN"; None
    for a neutral), or None for a control that display drops."""
    # (level, override "L"/"R"/None, isolate?); the bottom entry is the paragraph's
    stack: list[tuple[int, str | None, bool]] = [(_paragraph_level(line), None, False)]
    out: list[tuple[int, str | None] | None] = []
    for index, char in enumerate(line):
        level, override, _ = stack[-1]
        if char in (RLE, RLO, RLI, LRE, LRO, LRI, FSI):
            rtl = char in (RLE, RLO, RLI) or (char == FSI and _isolate_is_rtl(line[index + 1 :]))
            new = level + (1 if (level % 2 == 0) == rtl else 2)  # the next odd / even level
            isolate = char in (LRI, RLI, FSI)
            if new <= MAX_DEPTH:
                stack.append((new, "R" if char == RLO else "L" if char == LRO else None, isolate))
            out.append((level, None) if isolate else None)  # an isolate's marks stay
        elif char == PDF:
            if len(stack) > 1 and not stack[-1][2]:
                stack.pop()
            out.append(None)
        elif char == PDI:
            while len(stack) > 1 and not stack[-1][2]:
                stack.pop()
            if len(stack) > 1:
                stack.pop()
            out.append((stack[-1][0], None))
        else:
            out.append((level, override or _strong(char)))
    return out


def _side(typed: list[tuple[int, str | None]], at: int, level: int) -> str:
    """The direction next to a run of neutrals: the strong character at ``at`` of the same
    level, or at the run's start or end the level's own direction (sos, eos)."""
    if 0 <= at < len(typed) and typed[at][0] == level and typed[at][1] is not None:
        return "L" if typed[at][1] == "L" else "R"
    return "R" if level % 2 else "L"


def _neutrals(typed: list[tuple[int, str | None]]) -> list[tuple[int, str]]:
    """N1, N2 within each run of one level: a neutral between two strong characters of
    the same direction takes it (digits count as right-to-left), else its level's."""
    resolved: list[tuple[int, str]] = []
    i = 0
    while i < len(typed):
        level, kind = typed[i]
        if kind is not None:
            resolved.append((level, kind))
            i += 1
            continue
        j = i
        while j < len(typed) and typed[j][1] is None and typed[j][0] == level:
            j += 1
        own = "R" if level % 2 else "L"
        before, after = _side(typed, i - 1, level), _side(typed, j, level)
        resolved.extend((level, before if before == after else own) for _ in range(i, j))
        i = j
    return resolved


def _levels(line: str) -> list[int | None]:
    """The resolved level of each character of one line; None for a dropped control."""
    explicit = _explicit(line)
    kept = [item for item in explicit if item is not None]
    resolved = iter(_neutrals(kept))
    levels: list[int | None] = []
    for item in explicit:
        if item is None:
            levels.append(None)
            continue
        level, kind = next(resolved)
        if level % 2 == 0:  # I1
            levels.append(level + (1 if kind == "R" else 2 if kind in ("EN", "AN") else 0))
        else:  # I2
            levels.append(level + (1 if kind in ("L", "EN", "AN") else 0))
    return levels


def _reorder(indices: list[int], levels: list[int]) -> list[int]:
    """L2: from the highest level down to the lowest odd one, reverse every run at or
    above it."""
    odd = [level for level in levels if level % 2 == 1]
    if not odd:
        return indices  # all left to right: nothing moves
    lowest_odd = min(odd)
    order = list(zip(levels, indices, strict=True))
    for floor in range(max(levels), lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if order[i][0] >= floor:
                j = i
                while j < len(order) and order[j][0] >= floor:
                    j += 1
                order[i:j] = order[i:j][::-1]
                i = j
            else:
                i += 1
    return [index for _, index in order]


def display_order(text: str) -> DisplayText:
    """The text as drawn, line by line, without its bidirectional controls."""
    chars: list[str] = []
    origin: list[int] = []
    start = 0
    while start <= len(text):
        end = start
        while end < len(text) and text[end] not in _LINE_BREAKS:
            end += 1
        line = text[start:end]
        kept = [(i, level) for i, level in enumerate(_levels(line)) if level is not None]
        for i in _reorder([i for i, _ in kept], [level for _, level in kept]):
            chars.append(line[i])
            origin.append(start + i)
        if end < len(text):  # the line break itself, in place
            chars.append(text[end])
            origin.append(end)
        start = end + 1
    return DisplayText("".join(chars), tuple(origin))


def worst_of(stored: TextScore, shown: TextScore, display: DisplayText) -> TextScore:
    """Per category the higher of the scores of the stored and the displayed order; a
    score won by the displayed order keeps its spans, mapped back to the stored text."""
    categories = dict(stored.categories)
    for category, seen in shown.categories.items():
        if seen.score > stored.get(category).score:
            spans = tuple(sorted({display.logical_span(s, e) for s, e in seen.spans}))
            categories[category] = CategoryScore(category, seen.score, spans)
    return replace(stored, categories=categories)


def displayed_findings(
    stored: list[PrivacyFinding], shown: list[PrivacyFinding], display: DisplayText
) -> list[PrivacyFinding]:
    """The stored order's privacy findings, and those only the displayed order shows."""
    found = list(stored)
    kinds = {(f.kind, f.span) for f in stored}
    for finding in shown:
        span = display.logical_span(*finding.span)
        if (finding.kind, span) not in kinds:
            found.append(replace(finding, span=span))
            kinds.add((finding.kind, span))
    return found
