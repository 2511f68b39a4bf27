"""GET /api/v1/health: database, broker, worker and the web process's models, each with a status a person can read."""

from __future__ import annotations

import time
from typing import Any

from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the message says which
        return {"status": "down", "detail": f"{type(exc).__name__}: {exc}"}
    return {
        "status": "ok",
        "engine": connection.vendor,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def check_broker(app: Any = None) -> dict[str, Any]:
    if app is None:
        from sceneclf_site.celery import app

    started = time.perf_counter()
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            transport = conn.transport_cls
    except Exception as exc:
        return {"status": "down", "detail": f"broker unreachable ({type(exc).__name__}: {exc})"}
    return {
        "status": "ok",
        "transport": str(transport),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def check_workers(timeout: float = 3.0) -> dict[str, Any]:
    """A real round trip per queue: a ping task goes through the broker, a worker runs it, and the
    result comes back. Works on every broker transport (remote-control ping does not on SQLAlchemy)."""
    from sceneclf_site.celery import app, ping

    if app.conf.task_always_eager:
        return {"status": "ok", "detail": "tasks run inline (eager mode)", "queues": {}}
    queues: dict[str, dict[str, Any]] = {}
    pending = {name: ping.apply_async(queue=name, expires=timeout + 2) for name in ("default", "ml")}
    for name, result in pending.items():
        started = time.perf_counter()
        try:
            host = result.get(timeout=timeout, propagate=True)
            queues[name] = {"status": "ok", "worker": host, "latency_ms": round((time.perf_counter() - started) * 1000)}
        except Exception as exc:
            queues[name] = _busy_or_down(app, name, exc)
    status = "ok" if all(q["status"] == "ok" for q in queues.values()) else "down"
    return {"status": status, "queues": queues}


def _busy_or_down(app: Any, queue: str, exc: Exception) -> dict[str, Any]:
    """A worker deep in a training run cannot take the ping task, but its main process still answers
    remote control (on Redis): then the queue is busy, not down."""
    try:
        replies = app.control.ping(timeout=1.0) or []
    except Exception:
        replies = []
    busy = sorted(name for reply in replies for name in reply if name.startswith(f"{queue}@"))
    if busy:
        return {"status": "ok", "worker": busy[0], "detail": "busy: running a long task"}
    return {"status": "down", "detail": f"no worker answered on queue '{queue}' ({type(exc).__name__})"}


@extend_schema(summary="Service health", tags=["health"], responses={200: dict, 503: dict})
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def health(request: Request) -> Response:
    checks = {"database": check_database(), "broker": check_broker()}
    checks["worker"] = (
        check_workers()
        if checks["broker"]["status"] == "ok"
        else {
            "status": "down",
            "detail": "broker is down, so no worker can be reached",
        }
    )
    from modeling.services.serving import preload_status

    checks["model"] = preload_status()
    # Models still loading after a start do not make the service unhealthy: predicts wait for them meanwhile.
    healthy = all(check["status"] in ("ok", "loading") for check in checks.values())
    return Response({"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503)
