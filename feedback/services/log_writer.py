"""The prediction log, written off the request path.

A request hands its PredictionLog rows to this process's writer and returns. The writer appends them to its
spool file (one write() per request: in the kernel once it returns, so a crash of the process loses none)
and keeps them in a bounded buffer; a thread inserts the buffer every PREDICTION_LOG_FLUSH_MS, or as soon as
PREDICTION_LOG_BATCH_ROWS rows wait, in one transaction. Once everything appended is in the database the
spool file is emptied. At exit (gunicorn's worker_exit hook, atexit) the buffer is flushed and the spool
file removed.

A spool file whose writer died (its flock is free) is replayed by the next writer that starts, and then at
every recovery interval: rows whose request_id is already stored are skipped, so nothing is stored twice.
A row is dropped only when the database refuses it for good (e.g. its project was deleted meanwhile) or a
crash cut its spool line; `sceneclf_prediction_log_dropped_total` counts them. When the buffer is full and
the database cannot take rows, the oldest rows leave memory but stay in the spool file, replayed after this
process ends (`sceneclf_prediction_log_left_to_spool_total`).

PREDICTION_LOG_FLUSH_MS = 0 writes every request's rows inline instead (no thread, no spool)."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone
from prometheus_client import Counter

from feedback.models import PredictionLog

logger = logging.getLogger(__name__)

DROPPED = Counter("sceneclf_prediction_log_dropped", "Prediction log rows that could not be stored.")
WRITTEN = Counter("sceneclf_prediction_log_written", "Prediction log rows stored by the batched writer.")
LEFT_TO_SPOOL = Counter(
    "sceneclf_prediction_log_left_to_spool",
    "Rows taken out of a full buffer while the database was down; stored when the spool file is replayed.",
)

FIELDS = (
    "project_id", "model_version_id", "request_id", "session_id", "token_id", "text_masked", "text_hash",
    "label", "confidence", "abstained", "topk", "latency_ms",
)  # fmt: skip
RECOVER_EVERY_SECONDS = 60.0
RETRY_SECONDS = 1.0
SPOOL_SUFFIX = ".jsonl"


def row_to_json(row: PredictionLog) -> str:
    record = {name: getattr(row, name) for name in FIELDS}
    record["request_id"] = str(row.request_id)
    record["created_at"] = row.created_at.isoformat()
    return json.dumps(record, ensure_ascii=False)


def row_from_json(line: str) -> PredictionLog:
    record = json.loads(line)
    record["request_id"] = uuid.UUID(record["request_id"])
    record["created_at"] = datetime.fromisoformat(record["created_at"])
    return PredictionLog(**record)


def insert_rows(rows: list[PredictionLog]) -> int:
    """Inserts rows not yet stored (by request_id), keeping each row's own created_at; returns how many rows
    the database refused for good (dropped)."""
    stored = set(
        PredictionLog.objects.filter(request_id__in=[row.request_id for row in rows]).values_list(
            "request_id", flat=True
        )
    )
    rows = [row for row in rows if row.request_id not in stored]
    if not rows:
        return 0
    try:
        _insert_keeping_time(rows)
        return 0
    except (IntegrityError, DataError):
        pass  # one bad row (e.g. its project was deleted meanwhile) must not take the others with it
    refused = 0
    for row in rows:
        try:
            _insert_keeping_time([row])
        except (IntegrityError, DataError):
            refused += 1
    if refused:
        logger.error("prediction log: %s row(s) refused by the database and dropped", refused)
    return refused


def _insert_keeping_time(rows: list[PredictionLog]) -> None:
    times = [row.created_at for row in rows]
    with transaction.atomic():
        PredictionLog.objects.bulk_create(rows)  # auto_now_add stamps the insert time over the request's
        late = [row for row, at in zip(rows, times, strict=True) if row.created_at != at]
        for row, at in zip(rows, times, strict=True):
            row.created_at = at
        if late:
            PredictionLog.objects.bulk_update(late, ["created_at"])


class SpoolFile:
    """This writer's append-only file, flock'ed for its lifetime: a file whose lock is free has no writer."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}{SPOOL_SUFFIX}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def append(self, lines: Iterable[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def empty(self) -> None:
        os.ftruncate(self.fd, 0)

    def close(self, *, remove: bool) -> None:
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def recover_orphans(folder: Path, own: Path | None = None) -> int:
    """Replays the spool files of writers that died; returns how many rows were stored."""
    if not folder.is_dir():
        return 0
    stored = 0
    for path in sorted(folder.glob("*" + SPOOL_SUFFIX)):
        if own is not None and path == own:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # another process recovered it a moment ago
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            stored += _replay(path, fd)
        finally:
            os.close(fd)
    return stored


def _replay(path: Path, fd: int) -> int:
    with open(fd, "rb", closefd=False) as handle:
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    rows, torn = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            rows.append(row_from_json(line))
        except (ValueError, TypeError, KeyError):
            torn += 1  # cut off mid-line by the crash: nothing of it can be stored
    refused = 0
    for start in range(0, len(rows), 500):
        refused += insert_rows(rows[start : start + 500])
    if torn or refused:
        DROPPED.inc(torn + refused)
        logger.error("prediction log spool %s: %s unreadable and %s refused row(s) dropped", path.name, torn, refused)
    path.unlink(missing_ok=True)
    logger.info("prediction log spool %s replayed: %s row(s)", path.name, len(rows) - refused)
    return len(rows) - refused


class PredictionLogWriter:
    def __init__(self, *, flush_ms: int, batch_rows: int, buffer_rows: int, spool_dir: Path) -> None:
        self.flush_seconds = flush_ms / 1000.0
        self.batch_rows = max(1, batch_rows)
        self.buffer_rows = max(self.batch_rows, buffer_rows)
        self.spool_dir = spool_dir
        self._buffer: deque[PredictionLog] = deque()
        self._lock = threading.Lock()  # buffer, spool appends and the appended/settled counts
        self._wake = threading.Condition(self._lock)
        self._flushing = threading.Lock()  # one insert at a time: the thread, or a caller that flushes
        self._appended = 0
        self._settled = 0  # stored or dropped
        self._spool: SpoolFile | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._last_recovery = 0.0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def submit(self, rows: list[PredictionLog]) -> None:
        """Spools and buffers the rows; never waits for the database unless the buffer is full."""
        if not rows:
            return
        lines = [row_to_json(row) for row in rows]
        with self._lock:
            self._start()
            self._spool.append(lines)  # type: ignore[union-attr]
            self._appended += len(rows)
            self._buffer.extend(rows)
            full = len(self._buffer) > self.buffer_rows
            if len(self._buffer) >= self.batch_rows:
                self._wake.notify()
        if full:
            self._relieve_full_buffer()

    def holds(self, request_id: uuid.UUID) -> bool:
        with self._lock:
            return any(row.request_id == request_id for row in self._buffer)

    def flush(self) -> bool:
        """Inserts every buffered row now; False when the database could not be reached."""
        with self._flushing:
            while True:
                with self._lock:
                    batch = [self._buffer.popleft() for _ in range(min(self.batch_rows, len(self._buffer)))]
                if not batch:
                    return True
                if not self._insert(batch):
                    return False

    def close(self, timeout: float = 10.0) -> None:
        """Stops the thread and flushes; the spool file is removed only when all its rows are settled."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(RETRY_SECONDS)
        with self._lock:
            if self._spool is not None:
                self._spool.close(remove=self._settled == self._appended)
                self._spool = None

    def _start(self) -> None:
        if self._spool is None:
            self._spool = SpoolFile(self.spool_dir)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        self._recover()
        while True:
            with self._lock:
                if not self._stopping and len(self._buffer) < self.batch_rows:
                    self._wake.wait(self.flush_seconds)
                if self._stopping:
                    close_old_connections_now()
                    return
            if not self.flush():
                time.sleep(RETRY_SECONDS)
            if time.monotonic() - self._last_recovery > RECOVER_EVERY_SECONDS:
                self._recover()

    def _insert(self, batch: list[PredictionLog]) -> bool:
        try:
            refused = insert_rows(batch)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("prediction log: database unavailable (%s); %s row(s) kept", type(exc).__name__, len(batch))
            close_old_connections_now()
            with self._lock:
                self._buffer.extendleft(reversed(batch))
            return False
        if refused:
            DROPPED.inc(refused)
        WRITTEN.inc(len(batch) - refused)
        with self._lock:
            self._settled += len(batch)
            if self._settled == self._appended and self._spool is not None:
                self._spool.empty()
        return True

    def _relieve_full_buffer(self) -> None:
        """Backpressure: the request that overfilled the buffer inserts it; if the database is down the
        oldest rows leave memory (counted) and wait in the spool file for the replay."""
        if self.flush():
            return
        with self._lock:
            excess = len(self._buffer) - self.buffer_rows
            for _ in range(max(0, excess)):
                self._buffer.popleft()
        if excess > 0:
            LEFT_TO_SPOOL.inc(excess)
            logger.error("prediction log: buffer full and database unavailable; %s row(s) left to the spool", excess)

    def _recover(self) -> None:
        self._last_recovery = time.monotonic()
        own = self._spool.path if self._spool is not None else None
        try:
            recover_orphans(self.spool_dir, own)
        except DatabaseError as exc:
            logger.warning("prediction log: spool replay postponed (%s)", type(exc).__name__)
            close_old_connections_now()


def close_old_connections_now() -> None:
    """A broken connection of this thread is closed, so the next try opens a fresh one."""
    from django.db import connection

    with contextlib.suppress(Exception):
        connection.close()


_writer: PredictionLogWriter | None = None
_writer_pid: int | None = None
_writer_lock = threading.Lock()


def buffered() -> bool:
    return int(settings.PREDICTION_LOG_FLUSH_MS) > 0


def get_writer() -> PredictionLogWriter:
    """This process's writer (a forked child makes its own: the parent's lock and thread are not its own)."""
    global _writer, _writer_pid
    with _writer_lock:
        if _writer is None or _writer_pid != os.getpid():
            _writer = PredictionLogWriter(
                flush_ms=int(settings.PREDICTION_LOG_FLUSH_MS),
                batch_rows=int(settings.PREDICTION_LOG_BATCH_ROWS),
                buffer_rows=int(settings.PREDICTION_LOG_BUFFER_ROWS),
                spool_dir=Path(settings.PREDICTION_LOG_SPOOL_DIR),
            )
            _writer_pid = os.getpid()
        return _writer


def write_prediction_logs(rows: list[PredictionLog]) -> None:
    """The predict service's one call: inline when PREDICTION_LOG_FLUSH_MS is 0, else through the writer."""
    if not buffered():
        PredictionLog.objects.bulk_create(rows)
        return
    now = timezone.now()
    for row in rows:
        row.created_at = row.created_at or now
    get_writer().submit(rows)


def close_writer() -> None:
    """Flushes and stops this process's writer (gunicorn worker_exit, atexit)."""
    global _writer
    with _writer_lock:
        writer, _writer = (_writer, None) if _writer_pid == os.getpid() else (None, _writer)
    if writer is not None:
        writer.close()


atexit.register(close_writer)


def flush_pending() -> None:
    """Stores what this process still buffers (a page that predicts and then lists the log shows its row)."""
    if buffered() and _writer is not None and _writer_pid == os.getpid():
        _writer.flush()


_lookup = threading.local()  # .deadline: until when lookups of the current request may wait for a row


def _lookup_request_started(**kwargs: object) -> None:
    _lookup.in_request, _lookup.deadline = True, None


def _lookup_request_finished(**kwargs: object) -> None:
    _lookup.in_request, _lookup.deadline = False, None


request_started.connect(_lookup_request_started, dispatch_uid="prediction-lookup-request-started")
request_finished.connect(_lookup_request_finished, dispatch_uid="prediction-lookup-request-finished")


def _wait_deadline() -> float:
    """Two flush intervals (+ a margin) from the first lookup that waits: one window per request, however
    many request_ids a feedback batch names, so unknown ids cannot make a request wait long."""
    window = 2 * float(settings.PREDICTION_LOG_FLUSH_MS) / 1000.0 + 0.2
    if not getattr(_lookup, "in_request", False):
        return time.monotonic() + window
    if _lookup.deadline is None:
        _lookup.deadline = time.monotonic() + window
    return _lookup.deadline


def find_prediction_log(request_id: uuid.UUID) -> PredictionLog | None:
    """The logged prediction of a request_id, also right after predict answered: this process's buffer is
    flushed first, and a row another process still buffers is waited for (at most two flush intervals per
    request)."""
    from modeling.models import Alias

    # A shadow's row shares the request_id of the answer that was returned; feedback is about that answer.
    query = (
        PredictionLog.objects.filter(request_id=request_id).exclude(role=Alias.SHADOW).select_related("model_version")
    )
    if not buffered():
        return query.first()
    writer = get_writer()
    if writer.holds(request_id):
        writer.flush()
    log = query.first()
    deadline = _wait_deadline() if log is None else 0.0
    while log is None and time.monotonic() < deadline:
        time.sleep(0.02)
        log = query.first()
    return log
