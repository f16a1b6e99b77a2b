"""``moderation eval`` and ``moderation bench text``: metrics at the service's thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.text.evaluate import metrics
from models.text.fake import FakeTextScorer
from moderation.cli import app
from moderation.domain import Category
from moderation.policy import DEFAULT_POLICY
from tests.conftest import Configure

C = Category


def test_metrics_by_hand():
    texts = ["FAKE_INSULT", "FAKE_INSULT FAKE_THREAT", "hallo", "FAKE_SEXUAL", "doei"]
    gold = [
        frozenset({C.INSULT}),
        frozenset({C.INSULT}),
        frozenset(),
        frozenset(),
        frozenset({C.HATE}),
    ]
    result = metrics(gold, FakeTextScorer().score(texts), DEFAULT_POLICY.thresholds())
    insult = result["per_category"]["insult"]
    assert (insult["precision"], insult["recall"], insult["f1"]) == (1.0, 1.0, 1.0)
    assert result["per_category"]["threat"]["precision"] == 0.0  # one false positive
    assert result["per_category"]["hate"]["recall"] == 0.0  # missed
    assert result["benign_fpr"] == pytest.approx(1 / 2)  # "FAKE_SEXUAL" has no label
    # flagged or not: 2 true positives, 1 false positive, 1 miss
    assert result["flag_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert result["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.0 + 0.0) / 4)


def test_eval_command_uses_the_configured_scorer(configure: Configure, tmp_path: Path):
    configure(text_scorer="fake")
    data = tmp_path / "d.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"text": "jij FAKE_INSULT", "lang": "nl", "labels": ["insult"]},
                {"text": "fijne dag", "lang": "nl", "labels": []},
            ]
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["eval", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) >= {"per_category", "macro_f1", "benign_fpr", "flag_f1"}
    assert out["per_category"]["insult"]["f1"] == 1.0
    assert out["benign_fpr"] == 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "labels": ["rude"]}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "--data", str(bad)])
    assert result.exit_code == 2 and "line 1" in result.output


@pytest.mark.slow
def test_bench_text_reports_ours_beside_the_reference(configure: Configure):
    configure(text_scorer="lexicon")
    result = CliRunner().invoke(app, ["bench", "text", "--json", "--posts", "16"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert set(out) >= {"posts_per_s", "p50_ms", "p95_ms", "reference_posts_per_s", "speedup"}
    assert out["posts_per_s"] > 0 and out["reference_posts_per_s"] > 0
    assert out["speedup"] == pytest.approx(
        out["posts_per_s"] / out["reference_posts_per_s"], rel=0.05
    )
