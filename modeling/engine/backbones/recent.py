"""A bounded in-memory map of the features a process computed last, shared by every version it serves.

The champion and its shadow (or challenger) usually share a backbone: a retrained head on the same frozen
features. The shadow scores a request right after the champion, so it finds the request's features here and
runs its head alone instead of a second forward. Keys are a digest of the extractor's identity (fingerprint,
dtype, max_len, pooling, ...) and of the text, so the map holds no text, and two extractors that would compute
different vectors never share one."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

DEFAULT_CAPACITY = 4096


def text_key(identity: str, text: str) -> bytes:
    return hashlib.blake2b(f"{identity}\x00{text}".encode(), digest_size=16).digest()


class RecentFeatures:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(1, int(capacity))
        self._rows: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, identity: str, texts: Sequence[str]) -> tuple[list[bytes], dict[int, np.ndarray]]:
        """The keys of `texts` and the rows already held, by position."""
        keys = [text_key(identity, text) for text in texts]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._rows.get(key)
                if row is not None:
                    self._rows.move_to_end(key)
                    found[i] = row
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return keys, found

    def store(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        with self._lock:
            for key, row in zip(keys, rows, strict=True):
                self._rows[key] = row
                self._rows.move_to_end(key)
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
