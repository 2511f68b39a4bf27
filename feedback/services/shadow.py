"""Shadow scoring: the shadow version answers every request too, after the client has its answer.

One daemon thread per process scores the queued requests and logs the shadow's answers (PredictionLog with
role "shadow" and the request ids of the answers that were returned), so the comparison with the champion is
computed from logged data. The queue is bounded (SHADOW_MAX_PENDING): a request that finds it full is scored
in line, which slows that request rather than losing its shadow row. `flush_shadow` waits for the queue to
empty; it runs at interpreter exit, so a stopping web process writes what it still holds."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from feedback.models import PredictionLog
from labeling.models import Project
from modeling.models import Alias
from sceneclf_site.metrics import SHADOW_REQUESTS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    project_id: int
    project_slug: str
    version_id: int
    request: Any  # feedback.services.predict.PredictRequest
    request_ids: list[uuid.UUID]
    token_id: int | None


class ShadowScorer:
    def __init__(self, max_pending: int) -> None:
        self._jobs: queue.Queue[ShadowJob] = queue.Queue(maxsize=max(1, max_pending))
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.failures = 0

    def submit(self, job: ShadowJob) -> None:
        self._ensure_thread()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            SHADOW_REQUESTS.labels(job.project_slug, "inline").inc()
            run_job(job)

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until every queued job is written; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="shadow-scorer", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        lower_this_threads_priority()
        while True:
            job = self._jobs.get()
            try:
                close_old_connections()
                run_job(job)
                SHADOW_REQUESTS.labels(job.project_slug, "background").inc()
            except Exception:  # one failed shadow row must not stop the thread; the failure is counted
                self.failures += 1
                SHADOW_REQUESTS.labels(job.project_slug, "failed").inc()
                logger.exception("shadow scoring of project %s failed", job.project_id)
            finally:
                if self._jobs.empty():
                    connection.close()  # an idle thread holds no database session
                self._jobs.task_done()


SHADOW_NICENESS = 10  # added to the nice value the thread started with (a process already niced keeps the gap)


def lower_this_threads_priority() -> None:
    """The shadow yields the CPU to the answers clients wait for: on Linux a thread id takes its own nice
    value, so only this thread runs at a lower priority."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + SHADOW_NICENESS))
    except (AttributeError, OSError):  # not Linux, or not allowed: the shadow keeps the default
        logger.info("shadow scorer runs at the process's priority")


def run_job(job: ShadowJob) -> list[PredictionLog]:
    from feedback.services.predict import prediction_rows
    from modeling.services.serving import get_aliased_model, predict_with

    project = Project.objects.get(pk=job.project_id)
    model = get_aliased_model(project, job.version_id, Alias.SHADOW)
    started = time.perf_counter()
    predictions = predict_with(model, job.request.texts, k=job.request.k)
    latency_ms = (time.perf_counter() - started) * 1000.0
    rows = prediction_rows(
        project, model, job.request, predictions, job.request_ids, latency_ms, None, role=Alias.SHADOW
    )
    for row in rows:
        row.token_id = job.token_id
    return PredictionLog.objects.bulk_create(rows)


_scorer = ShadowScorer(int(settings.SHADOW_MAX_PENDING))
atexit.register(_scorer.flush)


def score_in_shadow(
    *, project: Project, version_id: int, request: Any, request_ids: list[uuid.UUID], token: Any | None
) -> None:
    job = ShadowJob(project.pk, project.slug, version_id, request, list(request_ids), getattr(token, "pk", None))
    _scorer.submit(job)


def flush_shadow(timeout: float = 30.0) -> bool:
    return _scorer.flush(timeout)


def shadow_failures() -> int:
    return _scorer.failures
