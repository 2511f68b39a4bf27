"""The micro-batcher: concurrent calls share one forward, each gets its own answers, in order; a lone call
never waits; a failing call fails alone; batches stay within the size limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from modeling.services.batching import MicroBatcher


class SlowForward:
    """Answers each text with (text, options); the first call blocks until released, so others queue."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts: list[str], options: Hashable) -> list[tuple[str, Hashable]]:
        self.calls.append(list(texts))
        self.started.set()
        self.release.wait(5)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"bad text {self.fail_on}")
        return [(text, options) for text in texts]


def run_concurrently(batcher: MicroBatcher, first: list[str], others: list[list[str]], forward: SlowForward,
                     options: list[Hashable] | None = None) -> dict[int, object]:  # fmt: skip
    """`first` occupies the model; `others` queue behind it; then the forward is released."""
    results: dict[int, object] = {}
    options = options or [("k", 3)] * (len(others) + 1)

    def call(index: int, texts: list[str]) -> None:
        try:
            results[index] = batcher.run(texts, options[index])
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=call, args=(0, first))]
    threads[0].start()
    assert forward.started.wait(5)
    for index, texts in enumerate(others, start=1):
        threads.append(threading.Thread(target=call, args=(index, texts)))
        threads[-1].start()
    deadline = time.monotonic() + 5
    while len(batcher._queue) < len(others) and time.monotonic() < deadline:
        time.sleep(0.005)
    forward.release.set()
    for thread in threads:
        thread.join(10)
    return results


def test_queued_calls_share_one_forward_and_get_their_own_answers_in_order():
    forward = SlowForward()
    batcher = MicroBatcher(forward, max_texts=64, max_delay_seconds=0.0)
    others = [[f"t{i}"] for i in range(1, 6)] + [["u1", "u2", "u3"]]
    results = run_concurrently(batcher, ["t0"], others, forward)
    assert forward.calls[0] == ["t0"]  # the first call ran alone, at once
    assert len(forward.calls) == 2 and sorted(forward.calls[1]) == sorted(t for texts in others for t in texts)
    assert results[0] == [("t0", ("k", 3))]
    for index, texts in enumerate(others, start=1):
        assert results[index] == [(text, ("k", 3)) for text in texts]


def test_a_lone_call_runs_at_once_without_the_gathering_delay():
    batcher = MicroBatcher(lambda texts, options: list(texts), max_texts=64, max_delay_seconds=2.0)
    started = time.perf_counter()
    assert batcher.run(["only"], None) == ["only"]
    assert batcher.run(["again"], None) == ["again"]
    assert time.perf_counter() - started < 0.5  # far below the 2 s gathering delay
    assert batcher.batches_run == 2


def test_a_failing_call_fails_alone():
    forward = SlowForward(fail_on="bad")
    batcher = MicroBatcher(forward, max_texts=64, max_delay_seconds=0.0)
    results = run_concurrently(batcher, ["t0"], [["a"], ["bad"], ["b"]], forward)
    assert results[1] == [("a", ("k", 3))] and results[3] == [("b", ("k", 3))]
    assert isinstance(results[2], ValueError) and "bad" in str(results[2])
    assert results[0] == [("t0", ("k", 3))]


def test_batches_never_exceed_the_size_limit_and_every_call_is_answered():
    forward = SlowForward()
    batcher = MicroBatcher(forward, max_texts=4, max_delay_seconds=0.0)
    others = [[f"t{i}"] for i in range(1, 10)]
    results = run_concurrently(batcher, ["t0"], others, forward)
    assert all(len(texts) <= 4 for texts in forward.calls)
    assert sorted(t for texts in forward.calls for t in texts) == sorted(["t0"] + [t[0] for t in others])
    for index, texts in enumerate(others, start=1):
        assert results[index] == [(texts[0], ("k", 3))]


def test_calls_with_other_options_are_not_mixed():
    forward = SlowForward()
    batcher = MicroBatcher(forward, max_texts=64, max_delay_seconds=0.0)
    options = [(3, False), (3, False), (5, False), (3, False), (5, True)]
    results = run_concurrently(batcher, ["t0"], [["a"], ["b"], ["c"], ["d"]], forward, options)
    for index, texts in enumerate([["t0"], ["a"], ["b"], ["c"], ["d"]]):
        assert results[index] == [(texts[0], options[index])]
    assert len(forward.calls) == 4  # t0 alone; a+c together; b; d
