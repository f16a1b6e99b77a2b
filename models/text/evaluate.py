"""Measuring a text scorer on labelled posts, at the service's own thresholds.

Each line of the data is ``{"text", "lang", "labels": [subset of insult, hate, threat,
sexual]}``; an empty list means the post is acceptable. A category counts as predicted
when its score reaches the policy's threshold for that category; a post counts as
flagged when any category does. Reported: precision, recall and F1 per category, their
macro average, the false-positive rate on posts with no labels (``benign_fpr``), and F1
of flagged-or-not (``flag_f1``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moderation.domain import Category, TextScore, TextScorer

BATCH = 64  # texts per scorer call


@dataclass(frozen=True)
class Labelled:
    text: str
    lang: str
    labels: frozenset[Category]


def read_labelled(path: Path) -> list[Labelled]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            rows.append(
                Labelled(
                    str(raw["text"]),
                    str(raw.get("lang", "")),
                    frozenset(Category(c) for c in raw.get("labels", [])),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name} line {number}: {exc}") from exc
    return rows


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def metrics(
    gold: Sequence[frozenset[Category]],
    scores: Sequence[TextScore],
    thresholds: dict[Category, float],
) -> dict[str, Any]:
    predicted = [frozenset(cs.category for cs in s.above(thresholds)) for s in scores]
    per_category = {}
    for cat in Category:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if cat in g and cat in p)
        fp = sum(1 for g, p in zip(gold, predicted, strict=True) if cat not in g and cat in p)
        fn = sum(1 for g, p in zip(gold, predicted, strict=True) if cat in g and cat not in p)
        per_category[cat.value] = _prf(tp, fp, fn)
    benign = [p for g, p in zip(gold, predicted, strict=True) if not g]
    flag_tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g and p)
    flag_fp = sum(1 for g, p in zip(gold, predicted, strict=True) if not g and p)
    flag_fn = sum(1 for g, p in zip(gold, predicted, strict=True) if g and not p)
    return {
        "per_category": per_category,
        "macro_f1": sum(m["f1"] for m in per_category.values()) / len(per_category),
        "benign_fpr": sum(1 for p in benign if p) / len(benign) if benign else 0.0,
        "flag_f1": _prf(flag_tp, flag_fp, flag_fn)["f1"],
        "posts": len(gold),
        "thresholds": {c.value: t for c, t in thresholds.items()},
    }


def evaluate(
    scorer: TextScorer, rows: Sequence[Labelled], thresholds: dict[Category, float]
) -> dict[str, Any]:
    scores: list[TextScore] = []
    for start in range(0, len(rows), BATCH):
        scores.extend(scorer.score([r.text for r in rows[start : start + BATCH]]))
    result = metrics([r.labels for r in rows], scores, thresholds)
    result["scorer"] = scorer.name
    return result


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{'category':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for cat, m in result["per_category"].items():
        lines.append(
            f"{cat:<10} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} "
            f"{m['support']:>8}"
        )
    lines.append(
        f"macro-F1 {result['macro_f1']:.3f}   flag-F1 {result['flag_f1']:.3f}   "
        f"benign FPR {result['benign_fpr']:.3f}   "
        f"({result['posts']} posts, scorer {result['scorer']})"
    )
    return "\n".join(lines)
