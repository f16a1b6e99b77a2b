"""The batching scorer: concurrent calls share passes, results and errors stay each
caller's own, and a lone caller is scored at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.text.fake import FakeScorerError, FakeTextScorer
from workers.batching import BatchingScorer

TEXTS = [f"bericht {i}" + (" FAKE_INSULT" if i % 3 == 0 else "") for i in range(24)]


def test_concurrent_calls_share_passes_and_keep_their_own_results():
    inner = FakeTextScorer(delay_s=0.05)  # each pass takes a while, so callers queue up
    scorer = BatchingScorer(inner)
    start = threading.Barrier(len(TEXTS))

    def one(text: str):
        start.wait()
        return scorer.score([text])[0]

    with ThreadPoolExecutor(len(TEXTS)) as pool:
        results = list(pool.map(one, TEXTS))
    assert results == [inner.score([t])[0] for t in TEXTS]
    assert scorer.passes < len(TEXTS) / 2  # most texts shared a pass


def test_a_failing_text_fails_only_its_own_call():
    scorer = BatchingScorer(FakeTextScorer(delay_s=0.05))
    texts = ["goedemorgen", "FAKE_FAIL", "tot morgen", "FAKE_THREAT hoor"]
    start = threading.Barrier(len(texts))

    def one(text: str):
        start.wait()
        try:
            return scorer.score([text])[0].to_json()
        except FakeScorerError:
            return "failed"

    with ThreadPoolExecutor(len(texts)) as pool:
        outcome = dict(zip(texts, pool.map(one, texts), strict=True))
    assert outcome["FAKE_FAIL"] == "failed"
    assert all(v != "failed" for t, v in outcome.items() if t != "FAKE_FAIL")


def test_a_lone_caller_is_scored_in_its_own_pass():
    scorer = BatchingScorer(FakeTextScorer())
    for text in TEXTS[:5]:
        assert scorer.score([text]) == FakeTextScorer().score([text])
    assert scorer.passes == 5
    with pytest.raises(FakeScorerError):
        scorer.score(["FAKE_FAIL"])
    assert scorer.score(["nog een"])[0].scorer == "fake"  # the lead was handed back
