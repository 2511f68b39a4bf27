"""The Celery app. Two queues: `default` for light work, `ml` for feature extraction and training,
so a long training run never delays an import or an agreement computation."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sceneclf_site.settings.local")

app = Celery("sceneclf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="default",
    task_queues=(Queue("default"), Queue("ml")),
    # Every modeling task (extraction, training, scoring) goes to `ml`; the rest to `default`.
    task_routes={
        "modeling.tasks.*": {"queue": "ml"},
    },
    # A worker killed mid-task must not lose it silently: ack late, reject on lost worker.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    broker_connection_retry_on_startup=True,
    result_expires=24 * 3600,
)
app.autodiscover_tasks()


@app.task(name="sceneclf.ping", ignore_result=False)
def ping() -> str:
    """Answered by whichever worker consumes the queue it was sent to; the health check uses it."""
    import socket

    return socket.gethostname()
