"""Prometheus metrics (prometheus-client) and GET /metrics.

- Requests: count and latency per endpoint (the URL route, never the raw path) and status, from a middleware.
- Predictions: count, abstentions and request latency per project and model version, read from the predict
  endpoint's answer; feedback items per status from the feedback endpoint's answer.
- Celery: task outcomes per task name (task_postrun), in whichever process runs the task.
- At scrape time: queue depths on the Redis broker, and training-run durations from the database.

Under gunicorn (several processes) and Celery's prefork pool every process writes its samples to files in
PROMETHEUS_MULTIPROC_DIR and a scrape adds them up (prometheus_client's multiprocess mode); without that
variable the samples live in this process only. docs/OPERATIONS.md, "Metrics", says how to scrape."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
PREDICT_VIEW = "feedback_api:predict"
FEEDBACK_VIEW = "feedback_api:feedback"
BROKER_QUEUES = ("default", "ml")
# kombu's Redis transport keeps priorities 3, 6 and 9 of a queue in lists of their own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

HTTP_REQUESTS = Counter(
    "sceneclf_http_requests", "HTTP requests answered, per endpoint (URL route), method and status.",
    ["endpoint", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "sceneclf_http_request_duration_seconds", "Time to answer an HTTP request, per endpoint (URL route).",
    ["endpoint"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
PREDICTIONS = Counter(
    "sceneclf_predictions", "Texts classified, per project and model version.", ["project", "version"]
)
ABSTENTIONS = Counter(
    "sceneclf_abstentions", "Texts the model abstained on (answered the fallback label), per project and version.",
    ["project", "version"],
)  # fmt: skip
PREDICT_LATENCY = Histogram(
    "sceneclf_predict_request_duration_seconds", "Predict requests' answer time, per project and model version.",
    ["project", "version"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
FEEDBACK_ITEMS = Counter(
    "sceneclf_feedback_items", "Feedback items received, per project and status.", ["project", "status"]
)
SHADOW_REQUESTS = Counter(
    "sceneclf_shadow_requests",
    "Predict requests scored by the shadow, per project and outcome (background, inline when the queue was full, "
    "failed).",
    ["project", "outcome"],
)
CELERY_TASKS = Counter(
    "sceneclf_celery_tasks", "Celery tasks finished, per task name and outcome.", ["task", "outcome"]
)


def record_predict(project: str, body: Any, seconds: float) -> None:
    """One predict answer: a single result, or {"model_version", "results": [...]} for a batch."""
    if not isinstance(body, dict):
        return
    version = str(body.get("model_version", ""))
    results = body.get("results") if "results" in body else [body]
    if not version or not isinstance(results, list):
        return
    PREDICTIONS.labels(project, version).inc(len(results))
    abstained = sum(1 for result in results if isinstance(result, dict) and result.get("abstained"))
    if abstained:
        ABSTENTIONS.labels(project, version).inc(abstained)
    PREDICT_LATENCY.labels(project, version).observe(seconds)


def record_feedback(project: str, body: Any) -> None:
    results = body.get("results") if isinstance(body, dict) else None
    if isinstance(results, list):
        for result in results:
            FEEDBACK_ITEMS.labels(project, str(result.get("status", ""))).inc()
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        FEEDBACK_ITEMS.labels(project, str(body["error"].get("code", ""))).inc()


class MetricsMiddleware:
    """Counts and times every request; the predict and feedback answers also feed their own metrics."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        endpoint = match.route if match is not None else "unmatched"
        HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(endpoint).observe(seconds)
        if match is not None and match.view_name in (PREDICT_VIEW, FEEDBACK_VIEW):
            project = str(match.kwargs.get("slug", ""))
            body = getattr(response, "data", None)  # DRF responses keep the data they rendered
            if match.view_name == FEEDBACK_VIEW:
                record_feedback(project, body)
            elif response.status_code == 200:
                record_predict(project, body, seconds)
        return response


def record_task_outcome(task: Any, state: str | None) -> None:
    CELERY_TASKS.labels(getattr(task, "name", None) or "unknown", (state or "unknown").lower()).inc()


class AppCollector(Collector):
    """Figures read at scrape time: queue depths on the broker and training-run durations."""

    def describe(self) -> list[Metric]:
        return []  # registering must not query the broker or the database

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("sceneclf_queue_depth", "Tasks waiting on the broker, per queue.", labels=["queue"])
        for queue, n in queue_depths().items():
            depth.add_metric([queue], n)
        yield depth
        from django.db import DatabaseError

        try:
            yield from training_run_metrics()
        except DatabaseError as exc:  # a scrape still answers, with what it could read
            logger.warning("training-run metrics not read from the database: %s", type(exc).__name__)


def queue_depths() -> dict[str, int]:
    """LLEN of each queue's lists on a Redis broker; nothing for the embedded broker."""
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return {}
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return {
            queue: sum(int(client.llen(queue + suffix)) for suffix in _PRIORITY_SUFFIXES) for queue in BROKER_QUEUES
        }
    except redis.RedisError as exc:
        logger.warning("queue depths not read from the broker: %s", type(exc).__name__)
        return {}


def training_run_metrics() -> Iterator[Metric]:
    from django.db.models import Count, F, Sum

    from modeling.models import ACTIVE_RUN_STATUSES, TrainingRun

    durations = SummaryMetricFamily(
        "sceneclf_training_run_duration_seconds",
        "Finished training runs' wall time (started to finished), per route and status.",
        labels=["route", "status"],
    )
    rows = (
        TrainingRun.objects.exclude(started_at=None)
        .exclude(finished_at=None)
        .values("route", "status")
        .annotate(n=Count("id"), total=Sum(F("finished_at") - F("started_at")))
    )
    for row in rows:
        durations.add_metric([row["route"], row["status"]], row["n"], row["total"].total_seconds())
    yield durations
    active = GaugeMetricFamily("sceneclf_training_runs_active", "Training runs waiting, queued or running.")
    active.add_metric([], TrainingRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).count())
    yield active


_APP_COLLECTOR = AppCollector()
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    REGISTRY.register(_APP_COLLECTOR)


def scrape_registry() -> CollectorRegistry:
    """Every process's samples in multiprocess mode, else this process's; the scrape-time figures on top."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_APP_COLLECTOR)
        return registry
    return REGISTRY


def scrape_allowed(request: Any) -> bool:
    """A bearer token when METRICS_BEARER_TOKEN is set (from anywhere), or a client address in
    METRICS_ALLOWED_IPS."""
    from django.conf import settings

    token = settings.METRICS_BEARER_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    return request.META.get("REMOTE_ADDR", "") in set(settings.METRICS_ALLOWED_IPS)


def metrics_view(request: Any) -> Any:
    from django.http import HttpResponse

    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    if not scrape_allowed(request):
        return HttpResponse("metrics: not allowed from this address or without the bearer token\n", status=403,
                            content_type="text/plain")  # fmt: skip
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
