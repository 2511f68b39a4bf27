"""GET /api/v1/health: database, broker and worker, each with a status a person can read."""

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


def check_broker() -> dict[str, Any]:
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


def check_workers(timeout: float = 2.0) -> dict[str, Any]:
    from sceneclf_site.celery import app

    if app.conf.task_always_eager:
        return {"status": "ok", "detail": "tasks run inline (eager mode)", "workers": []}
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception as exc:
        return {"status": "down", "detail": f"ping failed ({type(exc).__name__}: {exc})", "workers": []}
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return {"status": "down", "detail": "no worker answered a ping", "workers": []}
    queues = _active_queues(app, timeout)
    return {"status": "ok", "workers": names, "queues": queues}


def _active_queues(app: Any, timeout: float) -> dict[str, list[str]]:
    try:
        active = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:
        return {}
    return {worker: sorted(q["name"] for q in queues) for worker, queues in active.items()}


@extend_schema(summary="Service health", responses={200: dict, 503: dict})
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def health(request: Request) -> Response:
    checks = {"database": check_database(), "broker": check_broker()}
    checks["worker"] = check_workers() if checks["broker"]["status"] == "ok" else {
        "status": "down",
        "detail": "broker is down, so no worker can be reached",
    }
    healthy = all(check["status"] == "ok" for check in checks.values())
    return Response({"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503)
