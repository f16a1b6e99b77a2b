"""Which scorers run is configuration; each is built once per worker process."""

from __future__ import annotations

from functools import lru_cache

from moderation.config import Settings
from moderation.domain import TextScorer


@lru_cache(maxsize=4)
def _text_scorer(kind: str, fake_delay_s: float) -> TextScorer:
    if kind == "fake":
        from models.text.fake import FakeTextScorer

        return FakeTextScorer(delay_s=fake_delay_s)
    if kind == "model":
        from models.text.classifier import TextClassifier

        return TextClassifier()
    if kind == "lexicon":
        from models.text.lexicon import LexiconScorer

        return LexiconScorer()
    raise ValueError(f"unknown text scorer {kind!r}; choose model, lexicon or fake")


def text_scorer(settings: Settings) -> TextScorer:
    return _text_scorer(settings.text_scorer, settings.fake_scorer_delay_s)
