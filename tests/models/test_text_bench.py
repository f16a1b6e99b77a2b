"""``moderation bench text``: the JSON others read, the rounds, the optional histogram."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.text.bench import plot_latencies
from moderation.cli import app
from tests.conftest import Configure


@pytest.mark.slow
def test_bench_json_rounds_and_histogram(configure: Configure, tmp_path: Path) -> None:
    configure(text_scorer="lexicon")  # the plumbing; the model's speed is in the README
    plot = tmp_path / "latency.png"
    args = ["bench", "text", "--json", "--posts", "12", "--single", "4", "--rounds", "2"]
    result = CliRunner().invoke(app, [*args, "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert {"posts_per_s", "p50_ms", "p95_ms", "reference_posts_per_s", "speedup"} <= set(out)
    assert out["rounds"] == 2 and len(out["speedup_per_round"]) == 2
    assert out["backend"] is None  # the lexicon has no encoder backend
    assert 0 < out["p50_ms"] <= out["p95_ms"]
    assert out["speedup"] == pytest.approx(
        out["posts_per_s"] / out["reference_posts_per_s"], rel=0.01
    )
    assert out["plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "round 2/2" in result.output  # progress, on stderr


def test_histogram_of_latencies(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.png"
    assert plot_latencies([5.0, 6.0, 7.5, 30.0], [60.0, 70.0], path, title="t")
    assert path.stat().st_size > 1000


def test_bench_refuses_nonsense_counts(configure: Configure) -> None:
    configure(text_scorer="lexicon")
    result = CliRunner().invoke(app, ["bench", "text", "--rounds", "0"])
    assert result.exit_code == 2 and "rounds" in result.output
