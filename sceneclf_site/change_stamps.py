"""Change stamps: a short random value per topic in the shared cache (Redis, or the cache table), replaced
whenever something of that topic changes. A process may keep what it read from the database for as long as
the stamp it read beforehand is still the current one: one cache read per request (every topic at once)
replaces the queries, and a change made in any process is seen by every other process on its next request.

Order matters for correctness: read the stamp first, then the database. A change committed in between
replaces the stamp after the read, so the next request sees a new stamp and reads again."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")
KEY_PREFIX = "change-stamp:"


_request = threading.local()  # .stamps: the stamps read during the current request of this thread
TOPICS: set[str] = set()  # every topic a memo uses: a request reads them all in one cache call


def _request_started(**kwargs: object) -> None:
    _request.stamps = {}


def _request_finished(**kwargs: object) -> None:
    _request.stamps = None


request_started.connect(_request_started, dispatch_uid="change-stamps-request-started")
request_finished.connect(_request_finished, dispatch_uid="change-stamps-request-finished")


def current_stamp(topic: str) -> str | None:
    """The topic's stamp; None when the shared cache cannot be read (then nothing may be reused). Within a
    request every topic is read once, together: a change is seen by the next request."""
    stamps = getattr(_request, "stamps", None)
    if stamps is not None and topic in stamps:
        return stamps[topic]
    read = _read(sorted(TOPICS | {topic}) if stamps is not None else [topic])
    if read is None:
        return None
    if stamps is not None:
        stamps.update(read)
    return read[topic]


def _read(topics: list[str]) -> dict[str, str | None] | None:
    keys = {topic: KEY_PREFIX + topic for topic in topics}
    try:
        found = cache.get_many(list(keys.values()))
        missing = [key for key in keys.values() if key not in found]
        if missing:
            for key in missing:
                cache.add(key, uuid.uuid4().hex, timeout=None)
            found.update(cache.get_many(missing))
    except Exception as exc:  # the cache is down: every request reads the database, as without stamps
        logger.warning("change stamps %s not read: %s", ",".join(topics), type(exc).__name__)
        return None
    return {topic: found.get(key) for topic, key in keys.items()}


def _replace(topic: str) -> None:
    stamps = getattr(_request, "stamps", None)
    if stamps is not None:
        stamps.pop(topic, None)  # this request changed it: its own next read must see the new stamp
    try:
        cache.set(KEY_PREFIX + topic, uuid.uuid4().hex, timeout=None)
    except Exception as exc:
        # Entries read under the old stamp then live until their max age (see StampedMemo), no longer.
        logger.error("change stamp %s not replaced: %s", topic, type(exc).__name__)


def mark_changed(topic: str) -> None:
    """Now, and again when the current transaction commits: a process that read the database between the
    two would otherwise keep the old state under the new stamp."""
    _replace(topic)
    transaction.on_commit(lambda: _replace(topic))


@dataclass
class _Entry(Generic[T]):
    stamp: str
    read_at: float
    value: T


class StampedMemo(Generic[T]):
    """Values per key, reused while the topic's stamp is unchanged and the value is younger than max_age.
    Thread-safe enough for this use: a race only makes two threads read the database."""

    def __init__(self, topic: str, max_age_seconds: Callable[[], float]) -> None:
        self.topic = topic
        TOPICS.add(topic)
        self.max_age_seconds = max_age_seconds
        self._entries: dict[Hashable, _Entry[T]] = {}

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        stamp = current_stamp(self.topic)
        entry = self._entries.get(key)
        now = time.monotonic()
        fresh = entry is not None and now - entry.read_at < self.max_age_seconds()
        if stamp is not None and fresh and entry.stamp == stamp:  # type: ignore[union-attr]
            return entry.value  # type: ignore[union-attr]
        value = load()
        if stamp is not None:
            self._entries[key] = _Entry(stamp, now, value)
        return value

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
