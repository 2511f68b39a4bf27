"""Helpers the HTTP benchmarks share: a free loopback port, nearest-rank percentiles and closed-loop clients
(threads that each send one request at a time)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile q (0-100); 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def in_threads(count: int, target: Callable[[int], object]) -> float:
    """Runs target(0) .. target(count - 1) in threads at once; the wall seconds until the last one ends."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def closed_loop(
    clients: int, total: int | None, deadline: float, make_sender: Callable[[int], Callable[[], int | str]]
) -> tuple[list[float], Counter, float]:
    """`clients` threads, each sending one request at a time until `total` requests were sent (None: no bound) or
    time.monotonic() passes `deadline`. make_sender(i), called in client i's thread, returns the callable that
    sends that client's next request and returns its status. Returns the latencies in ms, the statuses and the
    wall seconds."""
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    remaining = [total]

    def run(index: int) -> None:
        send = make_sender(index)
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] is not None:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
            started = time.perf_counter()
            status = send()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                statuses[status] += 1
                latencies.append(elapsed)

    wall = in_threads(clients, run)
    return latencies, statuses, wall
