"""``moderation bench text``: our classifier's speed beside a reference, in one process.

The reference is what a developer would reach for first: an XLM-R-base-sized encoder
(the architecture of Detoxify's multilingual model) through the plain ``transformers``
text-classification pipeline. Its weights are random (timing does not depend on them)
and it uses the same XLM-R SentencePiece tokenizer, on the same Dutch posts. Both run
with the same thread count, one after the other, and the result reports their ratio:
these machines are shared and noisy, so the ratio is the figure to compare.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from moderation.domain import TextScorer

DATA = Path(__file__).resolve().parent / "data" / "test.jsonl"


def load_posts(limit: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    texts = [r["text"] for r in rows if r["lang"] == "nl"]
    return (texts * (limit // max(len(texts), 1) + 1))[:limit]


def _throughput(run: Callable[[Sequence[str]], object], texts: Sequence[str]) -> float:
    run(texts[:8])  # warm-up
    start = time.perf_counter()
    run(texts)
    return len(texts) / (time.perf_counter() - start)


def _latencies_ms(run: Callable[[Sequence[str]], object], texts: Sequence[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        run([text])
        out.append((time.perf_counter() - start) * 1000)
    return out


def reference_pipeline(tokenizer_path: str) -> Callable[[Sequence[str]], object]:
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
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    texts = load_posts(posts)
    progress(f"ours: {posts} posts batched, then {single} one by one ...")
    ours_tput = _throughput(scorer.score, texts)
    ours_lat = _latencies_ms(scorer.score, texts[:single])
    progress("reference (XLM-R-base-sized, transformers pipeline) ...")
    reference = reference_pipeline(tokenizer_path)
    ref_tput = _throughput(reference, texts)
    ref_lat = _latencies_ms(reference, texts[: max(single // 4, 10)])
    q = statistics.quantiles
    return {
        "posts_per_s": round(ours_tput, 1),
        "p50_ms": round(statistics.median(ours_lat), 2),
        "p95_ms": round(q(ours_lat, n=20)[18], 2),
        "reference_posts_per_s": round(ref_tput, 1),
        "reference_p50_ms": round(statistics.median(ref_lat), 2),
        "speedup": round(ours_tput / ref_tput, 2),
        "scorer": scorer.name,
        "threads": threads,
        "posts": posts,
    }
