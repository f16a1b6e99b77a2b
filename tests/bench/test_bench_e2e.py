"""``moderation bench e2e``: its material, its arithmetic, and short real runs of the
whole service (API and worker processes) on PostgreSQL + Redis and on the embedded
SQLite pair, which must lose and duplicate nothing."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from moderation.bench_e2e import (
    BenchOptions,
    PostOutcome,
    Submission,
    cpu_ms_per_post,
    format_summary,
    measure,
    percentile,
    run_bench,
)
from moderation.bench_material import Material, PostTemplate
from moderation.cli import app
from moderation.schemas import PostCreate
from tests.conftest import Configure
from tests.private_services import PrivateRedis


def test_the_realistic_mix_is_mostly_text_with_phone_sized_photos():
    material = Material("realistic", photos=2)
    kinds = Counter(material.template().kind for _ in range(2000))
    assert abs(kinds["text"] / 2000 - 0.70) < 0.04
    assert abs(kinds["photo"] / 2000 - 0.25) < 0.04
    assert abs(kinds["photos"] / 2000 - 0.05) < 0.02
    for data in material.photos:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert sorted(image.size) == [1200, 1600]
        assert 100_000 < len(data) < 2_000_000  # compresses like a real photo


def test_every_body_is_a_valid_post_with_the_given_id():
    material = Material("realistic", photos=2)
    lengths = []
    for i in range(300):
        template = material.template()
        post = PostCreate(**json.loads(template.body(f"post-{i}")))
        assert post.id == f"post-{i}"
        assert len(post.attachments) == template.photos
        if template.kind == "text":
            lengths.append(len(post.text))
    assert min(lengths) >= 5 and max(lengths) > 300  # a line, now and then a long message
    text_only = Material("text")
    assert {text_only.template().kind for _ in range(200)} == {"text"}


def _template(kind: str = "text") -> PostTemplate:
    return PostTemplate(kind, 0, b'{"id":', b"}")  # type: ignore[arg-type]


def test_measure_counts_latency_losses_and_duplicates():
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    subs = {f"p{i}": Submission(_template(), 0.0, 0.01, 202) for i in range(4)}
    subs["refused"] = Submission(_template(), 0.0, 0.01, 503)
    outcomes = {
        "p0": PostOutcome("p0", "released", t0, 1, t0 + timedelta(milliseconds=100)),
        "p1": PostOutcome("p1", "held", t0, 2, t0 + timedelta(milliseconds=300)),  # twice
        "p2": PostOutcome("p2", "released", t0, 1, t0 + timedelta(milliseconds=200)),
        "p3": PostOutcome("p3", "pending", t0),  # lost
    }
    deliveries = Counter({"s:p0:decision:1": 1, "s:p1:decision:1": 1, "s:p2:decision:1": 2})
    result = measure(subs, outcomes, deliveries, school_id="s", window_s=2.0)
    summary = result.summary
    assert (summary["accepted"], summary["refused"], summary["posts_per_s"]) == (4, 1, 2.0)
    assert summary["lost"] == 1
    assert summary["duplicated"] == 2  # one decision twice, one callback twice
    assert summary["p50_ms"] == 200.0
    assert summary["callbacks"] == {"delivered": 3, "missing": 0, "duplicated": 1}
    assert summary["refusals"] == {"503": 1}
    assert "lost 1, duplicated 2" in format_summary(
        {
            **summary,
            "backend": "x",
            "workers": 1,
            "pool": "threads x8",
            "mix": "text",
            "text_scorer": "fake",
            "offered_rate": 2,
            "seconds": 2,
            "cpu_ms_per_post": {"api": 1, "workers": 2},
            "logs": "var",
        }
    )


def test_cpu_per_post_counts_each_process_once_even_when_some_come_and_go():
    before = {"api": {1: 2.0}, "postgres": {7: 1.0, 8: 5.0}}
    after = {"api": {1: 3.0}, "postgres": {7: 1.5, 9: 0.5}}  # 8 closed, 9 opened
    assert cpu_ms_per_post(before, after, 10) == {"api": 100.0, "postgres": 100.0}


def test_percentile_interpolates():
    assert percentile([], 50) == 0.0
    assert percentile([10.0], 99) == 10.0
    assert percentile([0.0, 10.0, 20.0, 30.0, 40.0], 50) == 20.0
    assert percentile([0.0, 100.0], 95) == 95.0


def test_bad_options_are_refused_before_anything_starts():
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "e2e", "--mix", "videos"])
    assert result.exit_code == 2
    assert "unknown mix" in result.output
    with pytest.raises(ValueError, match="drop the URLs"):
        BenchOptions(embedded=True, broker_url="redis://127.0.0.1:1/0")


def _assert_clean(summary: dict[str, Any], submitted: int) -> None:
    assert summary["submitted"] == summary["accepted"] == submitted
    assert (summary["lost"], summary["duplicated"]) == (0, 0)
    assert summary["decided"] == submitted
    assert summary["callbacks"] == {"delivered": submitted, "missing": 0, "duplicated": 0}
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert Path(summary["histogram"]).is_file()
    assert json.loads((Path(summary["logs"]) / "result.json").read_text())["lost"] == 0


@pytest.mark.services
@pytest.mark.slow
def test_a_short_run_on_postgres_and_redis_loses_nothing(
    configure: Configure, private_redis: PrivateRedis, tmp_path: Path
):
    configure(media_scorer="fake")
    options = BenchOptions(
        rate=8,
        seconds=3,
        mix="text",
        text_scorer="fake",
        broker_url=private_redis.url(),
        warmup_posts=2,
        drain_timeout_s=60,
        out_dir=tmp_path / "bench",
    )
    summary = run_bench(options).summary
    _assert_clean(summary, 24)
    assert summary["backend"] == "postgresql+redis"
    assert summary["cpu_ms_per_post"]["api"] > 0
    assert summary["cpu_ms_per_post"]["postgres"] > 0  # the backends of the bench's database


@pytest.mark.slow
def test_a_short_run_on_the_embedded_default_loses_nothing(configure: Configure, tmp_path: Path):
    configure(media_scorer="fake")
    options = BenchOptions(
        rate=5,
        seconds=3,
        mix="realistic",
        text_scorer="lexicon",
        embedded=True,
        warmup_posts=2,
        drain_timeout_s=90,
        out_dir=tmp_path / "bench",
    )
    summary = run_bench(options).summary
    _assert_clean(summary, 15)
    assert summary["backend"] == "sqlite+sqlite-broker"
