"""Micro-batching of concurrent predict calls in one process (gunicorn gthread: one thread per request).

A call that finds the model idle runs at once, alone: no added wait. A call that finds it busy queues; when
the running forward ends, the first queued call leads the next one: it waits up to PREDICT_BATCH_DELAY_MS
for more calls to join (only while fewer than PREDICT_BATCH_MAX_TEXTS texts wait), takes the queued calls
with the same options (k, explain) up to that many texts, runs them through one batched forward and hands
every caller its own slice. No thread of its own: the leader is always a caller, and leadership passes on
to the next queued call. If a batched forward fails, each call of it runs again alone, so one bad request
only fails itself."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

Forward = Callable[[list[str], Hashable], list[Any]]


@dataclass(eq=False)
class _Call:
    texts: list[str]
    options: Hashable
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: list[Any] | None = None
    error: BaseException | None = None


class MicroBatcher:
    def __init__(self, forward: Forward, *, max_texts: int, max_delay_seconds: float) -> None:
        self.forward = forward
        self.max_texts = max(1, max_texts)
        self.max_delay_seconds = max(0.0, max_delay_seconds)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Call] = []
        self._busy = False
        self.batches_run = 0  # forwards run (tests and the load benchmark read these)
        self.largest_batch = 0

    def run(self, texts: Sequence[str], options: Hashable) -> list[Any]:
        call = _Call(list(texts), options)
        if len(call.texts) >= self.max_texts:
            return self.forward(call.texts, options)  # a full batch by itself: nothing to gather
        with self._lock:
            if self._busy:
                self._queue.append(call)
                self._arrived.notify_all()
            else:
                self._busy = True
                call.lead = True
        if not call.lead:
            call.ready.wait()
        if call.lead:
            try:
                self._run_batch(self._gather(call))
            finally:
                self._pass_on()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _gather(self, leader: _Call) -> list[_Call]:
        """The leader and the queued calls with its options, up to max_texts texts, in arrival order."""
        with self._lock:
            if leader in self._queue:
                self._queue.remove(leader)
            deadline = time.monotonic() + self.max_delay_seconds
            while len(leader.texts) < self._texts_like(leader) < self.max_texts:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            batch, size, rest = [leader], len(leader.texts), []
            for queued in self._queue:
                if queued.options == leader.options and size + len(queued.texts) <= self.max_texts:
                    batch.append(queued)
                    size += len(queued.texts)
                else:
                    rest.append(queued)
            self._queue = rest
        return batch

    def _texts_like(self, leader: _Call) -> int:
        return len(leader.texts) + sum(len(c.texts) for c in self._queue if c.options == leader.options)

    def _run_batch(self, batch: list[_Call]) -> None:
        texts = [text for call in batch for text in call.texts]
        try:
            results = self.forward(texts, batch[0].options)
            if len(results) != len(texts):
                raise RuntimeError(f"the forward answered {len(results)} results for {len(texts)} texts")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for call in batch:
                    raise_into(call, self.forward)
        else:
            start = 0
            for call in batch:
                call.result = results[start : start + len(call.texts)]
                start += len(call.texts)
        finally:
            self.batches_run += 1
            self.largest_batch = max(self.largest_batch, len(texts))
            for call in batch:
                if not call.lead:
                    call.ready.set()

    def _pass_on(self) -> None:
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.ready.set()
            else:
                self._busy = False


def raise_into(call: _Call, forward: Forward) -> None:
    """Runs one call alone; its own error, if any, is kept for its caller."""
    try:
        call.result = forward(call.texts, call.options)
    except Exception as exc:
        call.error = exc


_batchers: weakref.WeakKeyDictionary[Any, MicroBatcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def batcher_for(predictor: Any) -> MicroBatcher:
    """One batcher per loaded predictor (a hot-swapped model gets a new one; the old goes with it)."""
    with _batchers_lock:
        batcher = _batchers.get(predictor)
        if batcher is None:
            # A weak reference: the batcher lives in a WeakKeyDictionary keyed by this very predictor.
            ref = weakref.ref(predictor)

            def forward(texts: list[str], options: Hashable) -> list[Any]:
                k, explain = options  # type: ignore[misc]
                return ref().predict(texts, k=k, explain=explain)  # type: ignore[union-attr]

            batcher = MicroBatcher(
                forward,
                max_texts=int(settings.PREDICT_BATCH_MAX_TEXTS),
                max_delay_seconds=float(settings.PREDICT_BATCH_DELAY_MS) / 1000.0,
            )
            _batchers[predictor] = batcher
        return batcher


def batched_predict(predictor: Any, texts: list[str], *, k: int, explain: bool) -> list[Any]:
    """predictor.predict(texts, k, explain), sharing a forward with concurrent calls when batching is on."""
    if int(settings.PREDICT_BATCH_MAX_TEXTS) <= 0:
        return predictor.predict(texts, k=k, explain=explain)
    return batcher_for(predictor).run(texts, (k, explain))
