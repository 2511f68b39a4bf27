"""Without Redis, `make run` falls back to kombu's SQLAlchemy transport on a SQLite file: a real worker
started with exactly that configuration answers tasks on both queues."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "sceneclf_site", "worker", "--loglevel", "WARNING"]


@pytest.mark.worker
def test_worker_on_the_embedded_sqlite_broker_answers_both_queues(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_", "DATABASE_URL"))}
    env.update(DJANGO_SETTINGS_MODULE="sceneclf_site.settings.local", SCENECLF_DATA_DIR=str(tmp_path))
    worker = subprocess.Popen(
        [*CELERY_WORKER, "-Q", "default,ml", "--pool", "solo", "-n", "embedded@%h", "--without-gossip"],
        cwd=ROOT,
        env=env,
    )
    client = Celery(
        "client",
        broker=f"sqla+sqlite:///{tmp_path / 'celery-broker.sqlite3'}",
        backend=f"db+sqlite:///{tmp_path / 'celery-results.sqlite3'}",
    )
    try:
        for queue in ("default", "ml"):
            result = client.send_task("sceneclf.ping", queue=queue)
            # disable_sync_subtasks: an eager task earlier in the suite may leave Celery believing it runs in one
            assert result.get(timeout=60, disable_sync_subtasks=False) == os.uname().nodename
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert (tmp_path / "celery-broker.sqlite3").exists()
