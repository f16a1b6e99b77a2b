"""Which scorers run is configuration; each is built once per worker process."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from moderation.config import Settings
from moderation.domain import TextScorer
from workers.batching import BatchingScorer

if TYPE_CHECKING:
    from models.images.pipeline import ImageModels
    from models.text.encoder import Backend


@lru_cache(maxsize=4)
def _text_scorer(kind: str, fake_delay_s: float, backend: Backend = "onnx-int8") -> TextScorer:
    if kind == "fake":
        from models.text.fake import FakeTextScorer

        return FakeTextScorer(delay_s=fake_delay_s)
    if kind == "model":
        from models.text.classifier import TextClassifier

        # concurrent tasks of a threads-pool worker share one forward pass
        return BatchingScorer(TextClassifier(backend=backend))
    if kind == "lexicon":
        from models.text.lexicon import LexiconScorer

        return LexiconScorer()
    raise ValueError(f"unknown text scorer {kind!r}; choose model, lexicon or fake")


def text_scorer(settings: Settings) -> TextScorer:
    return _text_scorer(settings.text_scorer, settings.fake_scorer_delay_s, settings.text_backend)


@lru_cache(maxsize=2)
def _image_models(kind: str) -> ImageModels:
    from models.images.pipeline import ImageModels

    if kind == "model":
        return ImageModels.load()
    if kind == "fake":
        return ImageModels.fake()
    raise ValueError(f"unknown media scorer {kind!r}; choose model or fake")


def image_models(settings: Settings) -> ImageModels:
    """The face and nudity models (``fake``: none, every photo shows nobody)."""
    return _image_models(settings.media_scorer)
