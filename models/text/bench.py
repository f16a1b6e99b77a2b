"""``moderation bench text``: our classifier's speed beside a reference, in one process.

It measures the scorer the service runs (the configured backend, through the same
``workers.scorers.text_scorer`` the workers call), on the held-out Dutch posts: posts/s
when a batch of posts is scored in one call, and the latency of one post scored alone.

The reference is what a developer would reach for first: an XLM-R-base-sized encoder
(the architecture of Detoxify's multilingual model) through the plain ``transformers``
text-classification pipeline. Its weights are random (timing does not depend on them)
and it uses the same XLM-R SentencePiece tokenizer, on the same Dutch posts. Both run
with the same thread count, one after the other, in alternating rounds; the result
reports their ratio, also per round: these machines are shared and noisy, so the ratio
measured seconds apart is the figure to compare, not the absolute posts/s.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from moderation.domain import TextScorer

DATA = Path(__file__).resolve().parent / "data" / "test.jsonl"
REFERENCE_SINGLE_SHARE = 4  # the reference scores 1/4 as many single posts (it is slow)

Run = Callable[[Sequence[str]], object]
Progress = Callable[[str], None]


def load_posts(limit: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    texts = [r["text"] for r in rows if r["lang"] == "nl"]
    return (texts * (limit // max(len(texts), 1) + 1))[:limit]


def _throughput(run: Run, texts: Sequence[str]) -> float:
    run(texts[:8])  # warm-up
    start = time.perf_counter()
    run(texts)
    return len(texts) / (time.perf_counter() - start)


def _latencies_ms(run: Run, texts: Sequence[str], progress: Progress, what: str) -> list[float]:
    out = []
    run(texts[:1])  # warm-up
    step = max(len(texts) // 4, 1)
    for number, text in enumerate(texts, 1):
        start = time.perf_counter()
        run([text])
        out.append((time.perf_counter() - start) * 1000)
        if number % step == 0 and number < len(texts):
            progress(f"  {what}: {number}/{len(texts)} single posts")
    return out


def _p95(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def reference_pipeline(tokenizer_path: str) -> Run:
    from transformers import (
        AutoTokenizer,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
        pipeline,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = XLMRobertaConfig(vocab_size=len(tokenizer))  # base-sized: 12 x 768
    config.num_labels = 6  # Detoxify's multilingual head
    model = XLMRobertaForSequenceClassification(config)
    model.train(False)  # eval mode
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)

    def run(texts: Sequence[str]) -> object:
        return classify(list(texts), batch_size=32, truncation=True, max_length=128)

    return run


def run_benchmark(
    scorer: TextScorer,
    *,
    tokenizer_path: str,
    posts: int = 512,
    single: int = 100,
    threads: int = 2,
    rounds: int = 1,
    backend: str | None = None,
    plot: Path | None = None,
    progress: Progress = print,
) -> dict[str, Any]:
    """Ours and the reference in ``rounds`` alternating rounds; medians and ratios.

    ``posts_per_s`` and ``reference_posts_per_s`` are the medians over the rounds and
    ``speedup`` their ratio; ``speedup_per_round`` has each round's own ratio (its two
    sides measured seconds apart, so the machine's load hits both alike). Latency
    percentiles pool every round.
    """
    if posts < 1 or single < 1 or rounds < 1:
        raise ValueError("posts, single and rounds must be at least 1")
    torch.set_num_threads(threads)
    texts = load_posts(posts)
    ref_single = max(single // REFERENCE_SINGLE_SHARE, 10)
    progress("loading the reference (XLM-R-base-sized, transformers pipeline) ...")
    reference = reference_pipeline(tokenizer_path)
    ours_tput: list[float] = []
    ref_tput: list[float] = []
    ours_lat: list[float] = []
    ref_lat: list[float] = []
    for number in range(1, rounds + 1):
        tag = f"round {number}/{rounds}"
        progress(f"{tag}: ours, {posts} posts in one call ...")
        ours_tput.append(_throughput(scorer.score, texts))
        progress(f"{tag}: ours, {single} posts one by one ...")
        ours_lat += _latencies_ms(scorer.score, texts[:single], progress, "ours")
        progress(f"{tag}: reference, {posts} posts in one call ...")
        ref_tput.append(_throughput(reference, texts))
        progress(f"{tag}: reference, {ref_single} posts one by one ...")
        ref_lat += _latencies_ms(reference, texts[:ref_single], progress, "reference")
        progress(
            f"{tag}: ours {ours_tput[-1]:.1f} posts/s, reference {ref_tput[-1]:.1f}: "
            f"{ours_tput[-1] / ref_tput[-1]:.2f}x"
        )
    speedups = [o / r for o, r in zip(ours_tput, ref_tput, strict=True)]
    result: dict[str, Any] = {
        "posts_per_s": round(statistics.median(ours_tput), 1),
        "p50_ms": round(statistics.median(ours_lat), 2),
        "p95_ms": round(_p95(ours_lat), 2),
        "reference_posts_per_s": round(statistics.median(ref_tput), 1),
        "reference_p50_ms": round(statistics.median(ref_lat), 2),
        "reference_p95_ms": round(_p95(ref_lat), 2),
        "speedup": round(statistics.median(ours_tput) / statistics.median(ref_tput), 2),
        "speedup_per_round": [round(s, 2) for s in speedups],
        "latency_ratio_p50": round(statistics.median(ref_lat) / statistics.median(ours_lat), 2),
        "scorer": scorer.name,
        "backend": backend,
        "threads": threads,
        "posts": posts,
        "rounds": rounds,
        "load_1m": _load_1m(),
    }
    if plot is not None and plot_latencies(ours_lat, ref_lat, plot, title=_title(result)):
        result["plot"] = str(plot)
    return result


def _load_1m() -> float | None:
    """The machine's one-minute load average: how busy it was while we measured."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _title(result: dict[str, Any]) -> str:
    who = result["scorer"] + (f" ({result['backend']})" if result["backend"] else "")
    return (
        f"single-post latency: {who} p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms; "
        f"reference p50 {result['reference_p50_ms']} ms"
    )


def plot_latencies(
    ours_ms: Sequence[float], reference_ms: Sequence[float], path: Path, *, title: str = ""
) -> bool:
    """A histogram of single-post latencies (log scale) to ``path``; False without
    matplotlib, which only the ``dev`` extra installs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return False
    low = max(min(*ours_ms, *reference_ms) * 0.8, 0.1)
    high = max(*ours_ms, *reference_ms) * 1.25
    bins = [float(b) for b in np.geomspace(low, high, 40)]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(ours_ms, bins=bins, alpha=0.7, label=f"ours ({len(ours_ms)} posts)")
    ax.hist(reference_ms, bins=bins, alpha=0.7, label=f"reference ({len(reference_ms)} posts)")
    ax.set_xscale("log")
    ax.set_xlabel("ms per post, scored alone")
    ax.set_ylabel("posts")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
