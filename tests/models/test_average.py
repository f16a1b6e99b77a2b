"""Weight averaging of trained runs (``moderation average-text``) on two tiny runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner, Result

from models.text.average import average_runs
from models.text.classifier import TextClassifier, write_manifest
from models.text.encoder import build_encoder, load_model
from models.text.train import train
from moderation.cli import app

pytestmark = pytest.mark.slow
THRESHOLDS = [0.5, 0.5, 0.4, 0.5]
TEXTS = ["Wat een kankerjuf is dat", "Fijne vakantie allemaal!", "Ik weet waar je woont"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two runs of the same recipe from different seeds."""
    dirs = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"run{seed}")
        train(
            thresholds=THRESHOLDS,
            out_dir=out,
            epochs=1,
            limit=48,
            seed=seed,
            progress=lambda _: None,
        )
        dirs.append(out)
    return dirs


def _average(runs: list[Path], out: Path) -> dict[str, Any]:
    return average_runs(runs, thresholds=THRESHOLDS, out_dir=out, limit=48, progress=lambda _: None)


def test_the_average_update_is_the_mean_of_the_runs_updates(runs: list[Path], tmp_path: Path):
    report = _average(runs, tmp_path / "avg")
    assert report["lora"] == {
        "rank": 16,
        "alpha": 32,
        "targets": ["dense", "key", "query", "value"],
    }
    assert [r["seed"] for r in report["averaged_runs"]] == [0, 1]
    base = build_encoder()
    merged = [
        load_model(str(base), packaged=True, adapter_dir=d / "adapter").state_dict()
        for d in (*runs, tmp_path / "avg")
    ]
    plain = load_model(str(base), packaged=True).state_dict()
    changed = 0
    for key, weight in merged[2].items():
        expected = (merged[0][key] + merged[1][key]) / 2
        assert torch.allclose(weight, expected, atol=1e-6), key
        changed += not torch.equal(weight, plain[key])
    assert changed >= 12 * 6  # every layer's query, key, value and three dense weights
    heads = [torch.load(d / "head.pt", weights_only=True) for d in (*runs, tmp_path / "avg")]
    for key in heads[2]:
        assert torch.allclose(heads[2][key], (heads[0][key] + heads[1][key]) / 2)


def test_a_run_averaged_with_itself_scores_as_it_did(runs: list[Path], tmp_path: Path):
    _average([runs[0], runs[0]], tmp_path / "same")
    alone = TextClassifier(runs[0], backend="torch").probabilities(TEXTS)
    twice = TextClassifier(tmp_path / "same", backend="torch").probabilities(TEXTS)
    assert twice == pytest.approx(alone, abs=1e-4)


def test_the_command_refuses_what_it_cannot_average(runs: list[Path], tmp_path: Path):
    def average(*dirs: Path) -> Result:
        return CliRunner().invoke(
            app, ["average-text", *map(str, dirs), "--out", str(tmp_path / "x")]
        )

    result = average(runs[0])
    assert result.exit_code == 2 and "at least two runs" in result.output
    result = average(runs[0], tmp_path)
    assert result.exit_code == 2 and "run `moderation train-text` first" in result.output
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    config = json.loads((other / "adapter" / "adapter_config.json").read_text())
    config["target_modules"] = ["query", "value"]
    (other / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    write_manifest(other)
    result = average(runs[0], other)
    assert result.exit_code == 2 and "different modules" in result.output
    assert not (tmp_path / "x").exists()
