"""A fake text scorer for tests and local development (no model, no word list).

It scores a category 1.0 when the text contains ``FAKE_<CATEGORY>`` (for example
``FAKE_INSULT``), with the span of that marker; it raises :class:`FakeScorerError` on
``FAKE_FAIL``, and sleeps ``delay_s`` per call, so tests can kill a worker mid-task.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from moderation.domain import Category, CategoryScore, TextScore

FAIL_MARKER = "FAKE_FAIL"


class FakeScorerError(RuntimeError):
    """Raised on purpose, to test the retry and fail-closed path."""


class FakeTextScorer:
    name = "fake"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def score(self, texts: Sequence[str]) -> list[TextScore]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> TextScore:
        if FAIL_MARKER in text:
            raise FakeScorerError("the fake scorer was asked to fail")
        categories = {}
        for cat in Category:
            marker = f"FAKE_{cat.value.upper()}"
            at = text.find(marker)
            hit = at >= 0
            spans = ((at, at + len(marker)),) if hit else ()
            categories[cat] = CategoryScore(cat, 1.0 if hit else 0.0, spans)
        return TextScore(self.name, categories)
