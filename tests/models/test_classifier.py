"""The trained classifier end to end on a tiny run: train, save, verify, load, score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.text.classifier import TextClassifier, WeightsError, clauses
from models.text.train import choose_operating_point, train
from moderation.domain import Category, TextScorer


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weights")
    report = train(
        thresholds=[0.5, 0.5, 0.4, 0.5],
        out_dir=out,
        epochs=1,
        limit=48,
        batch_size=16,
        progress=lambda _: None,
    )
    assert 0.0 <= report["dev_macro_f1"] <= 1.0
    point = report["operating_point"]
    within_budget = point["dev_benign_fpr"] <= 0.02
    assert point["logit_shift"] <= 0 and (within_budget or point["logit_shift"] == -4.0)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_the_operating_point_is_the_smallest_shift_within_the_benign_budget():
    # 10 benign posts (logits 1.0, 0.6, 0.2, -0.2, ... ) and 2 posts labelled insult
    benign = np.array([[1.0 - 0.4 * i, -5, -5, -5] for i in range(10)], dtype=np.float32)
    positive = np.array([[3.0, -5, -5, -5], [0.8, -5, -5, -5]], dtype=np.float32)
    logits = np.concatenate([benign, positive])
    gold = np.zeros_like(logits)
    gold[10:, 0] = 1
    point = choose_operating_point(
        lambda shift: _sigmoid(logits + shift), gold, [0.5] * 4, max_benign_fpr=0.1
    )
    # unshifted, benign logits 1.0, 0.6, 0.2 reach 0.5 (3 of 10); at -0.25 two, at -0.75 one
    assert point["logit_shift"] == -0.75
    assert point["dev_benign_fpr"] == pytest.approx(0.1)
    # both positives still reach 0.5 and one benign post does: insult F1 0.8, the rest 0
    assert point["dev_macro_f1"] == pytest.approx(0.8 / 4)
    unlimited = choose_operating_point(
        lambda shift: _sigmoid(logits + shift), gold, [0.5] * 4, max_benign_fpr=1.0
    )
    assert unlimited["logit_shift"] == 0.0


@pytest.mark.slow
def test_trained_weights_load_and_score_with_spans(tiny_weights: Path):
    model = TextClassifier(tiny_weights)
    assert isinstance(model, TextScorer)
    texts = ["Wat een kankerjuf is dat", "Fijne vakantie allemaal!", ""]
    scores = model.score(texts)
    assert len(scores) == 3
    for score in scores:
        assert set(score.categories) == set(Category)
        assert all(0.0 <= cs.score <= 1.0 for cs in score.categories.values())
    insult = scores[0].get(Category.INSULT)
    if insult.score >= TextClassifier.SPAN_AT:
        start, end = insult.spans[0]
        assert "kanker" in texts[0][start:end]
    # batching does not change a post's scores
    alone = model.score([texts[1]])[0].get(Category.INSULT).score
    assert alone == pytest.approx(scores[1].get(Category.INSULT).score, abs=1e-4)


def test_tampered_weights_are_refused(tiny_weights: Path, tmp_path: Path):
    copy = tmp_path / "w"
    copy.mkdir()
    for path in tiny_weights.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(tiny_weights)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    calibration = copy / "calibration.json"
    data = json.loads(calibration.read_text())
    data["calibration"]["bias"][0] += 5
    calibration.write_text(json.dumps(data))
    with pytest.raises(WeightsError, match="do not match"):
        TextClassifier(copy)
    with pytest.raises(WeightsError, match="train-text"):
        TextClassifier(tmp_path / "nothing")


def test_clauses_cover_the_text():
    text = (
        "Hallo juf. Dit is een heel lange zin met veel te veel woorden erin zodat hij "
        "in stukken moet! En nog een"
    )
    spans = clauses(text)
    assert spans[0] == (0, len("Hallo juf."))
    assert all(0 <= s < e <= len(text) for s, e in spans)
    assert spans[-1][1] == len(text)


@pytest.mark.slow
def test_committed_model_on_the_held_out_split():
    """Guards the shipped weights against regressions, at the service's own thresholds
    (measured: macro-F1 0.857, benign FPR 0.017, flag-F1 0.909 on the 1,907-post split
    with the labels of the third annotation pass; models/text/README.md)."""
    from models.text.evaluate import evaluate, read_labelled
    from moderation.policy import DEFAULT_POLICY

    rows = read_labelled(Path(__file__).resolve().parents[2] / "models/text/data/test.jsonl")
    result = evaluate(TextClassifier(), rows, DEFAULT_POLICY.thresholds())
    assert result["macro_f1"] >= 0.845
    assert result["benign_fpr"] <= 0.02
    assert result["flag_f1"] >= 0.895
