"""One forward pass for the texts of many tasks: a scorer that batches concurrent calls.

Why: the text model scores a batch of 32 posts in one pass about twice as fast per
post as 32 single-post passes (``models/text/README.md``), but a Celery task carries one
post. With a threads pool (``moderation worker --pool threads --concurrency 8``) several
text tasks run at once in one process; each calls ``score([text])`` here and waits,
while the model thread runs one pass over everything queued, then the next pass over
what queued up meanwhile. No timer and no fixed window: under light load a post is
scored alone at once, under heavy load the batches grow by themselves, up to
``max_batch``.

A failing batch is scored again one call at a time, so a text that makes the model
raise fails only its own task (which retries, then holds the post), never its batch.
With the solo or prefork pools there is never a second caller: each pass scores one post.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from moderation.domain import TextScore, TextScorer


@dataclass
class _Call:
    texts: list[str]
    scores: list[TextScore] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class BatchingScorer:
    """Wraps a :class:`~moderation.domain.TextScorer`; same interface, same results.

    The model runs on one thread of its own, started on first use (so after any fork).
    One thread, not whichever task thread comes first: PyTorch gives every thread that
    calls it its own pool of compute threads, and eight task threads taking turns would
    keep eight such pools spinning on two cores."""

    def __init__(self, inner: TextScorer, max_batch: int = 64) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_batch = max_batch  # texts per pass; the model splits its own batches too
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._thread: threading.Thread | None = None
        self.passes = 0  # forward passes run (tests, and curiosity)

    def score(self, texts: Sequence[str]) -> list[TextScore]:
        call = _Call(list(texts))
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="text-model", daemon=True)
                self._thread.start()
            self._queue.append(call)
            self._cond.notify_all()
            while not call.done:
                self._cond.wait()
        if call.error is not None:
            raise call.error
        return call.scores

    def _serve(self) -> None:
        """The model thread: one pass over everything queued, again and again."""
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch = self._take()
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._cond.notify_all()

    def _take(self) -> list[_Call]:
        batch: list[_Call] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
            call = self._queue.pop(0)
            batch.append(call)
            size += len(call.texts)
        return batch

    def _run(self, batch: list[_Call]) -> None:
        self.passes += 1
        try:
            scores = self.inner.score([t for call in batch for t in call.texts])
        except Exception:
            for call in batch:  # alone, each keeps its own result or its own error
                _score_alone(call, self.inner)
            return
        except BaseException as exc:  # the thread is going down: no caller may wait forever
            for call in batch:
                call.error, call.done = exc, True
            raise
        at = 0
        for call in batch:
            call.scores, call.done = scores[at : at + len(call.texts)], True
            at += len(call.texts)


def _score_alone(call: _Call, scorer: TextScorer) -> None:
    try:
        call.scores = scorer.score(call.texts)
    except Exception as exc:
        call.error = exc
    call.done = True
