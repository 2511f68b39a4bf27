"""Start a real Celery worker process against the test database and the real Redis broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_worker() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@contextmanager
def running_worker(queues: str = "default,ml", timeout: float = 60.0) -> Iterator[subprocess.Popen]:
    """Yield once the worker answers a ping on every queue; always stop it afterwards."""
    from sceneclf_site.celery import app, ping

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sceneclf_site.settings.test",
        "DATABASE_URL": database_url_for_worker(),
        "SCENECLF_DATA_DIR": str(settings.DATA_DIR),
        "REDIS_URL": settings.CELERY_BROKER_URL,
    }
    cmd = [sys.executable, "-m", "celery", "-A", "sceneclf_site", "worker", "-Q", queues,
           "--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle",
           "-n", f"test-{os.getpid()}@%h", "--loglevel", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    previous_eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        deadline = time.monotonic() + timeout
        for queue in queues.split(","):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited early with code {proc.returncode}")
                try:
                    ping.apply_async(queue=queue, expires=5).get(timeout=5)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
        yield proc
    finally:
        app.conf.task_always_eager = previous_eager
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(predicate, timeout: float, what: str):
    """The first truthy value of `predicate`, polled while a worker runs; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
