"""The Celery app. Two queues: `default` for light work, `ml` for feature extraction and training,
so a long training run never delays an import or an agreement computation."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from celery import Celery, signals
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
        "feedback.tasks.check_drift": {"queue": "ml"},  # extracts features
    },
    # A worker killed mid-task must not lose it silently: ack late, reject on lost worker.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    # Task state lives in our own tables; sending without subscribing to a result keeps a request from waiting
    # on the result backend's reconnect loop when Redis is down. The health ping asks for its result itself.
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    result_expires=24 * 3600,
)
app.autodiscover_tasks()


@signals.task_postrun.connect
def _count_task_outcome(sender: Any = None, state: str | None = None, **kwargs: Any) -> None:
    """Every finished task, in whichever process ran it (GET /metrics adds the processes up)."""
    from sceneclf_site.metrics import record_task_outcome

    record_task_outcome(sender, state)


def _beat_schedule() -> dict[str, dict[str, Any]]:
    """Every periodic job in one place. Exactly one beat process runs in a deployment."""
    from django.conf import settings

    minutes = max(1, settings.CELERY_BEAT_INTERVAL_MINUTES)
    requeue = timedelta(seconds=max(5, settings.REQUEUE_EVERY_SECONDS))
    return {
        # Training runs whose worker died (heartbeat older than TRAINING_STALE_AFTER_SECONDS) become `failed`
        # and their partial artifacts go; checked often enough that a project can train again within a minute.
        "modeling-sweep-stale-runs": {
            "task": "modeling.tasks.sweep_stale_runs",
            "schedule": timedelta(seconds=max(5, settings.TRAINING_STALE_AFTER_SECONDS // 3)),
            "options": {"queue": "default"},  # never behind a long training on `ml`
        },
        # Runs left "waiting for the queue" (the broker was down when they were started) are sent again.
        "modeling-requeue-waiting-runs": {
            "task": "modeling.tasks.requeue_waiting_runs",
            "schedule": requeue,
            "options": {"queue": "default"},
        },
        # Retrain where enough new gold labels arrived; re-score the pool where new items arrived.
        "modeling-active-learning": {"task": "modeling.tasks_al.beat", "schedule": timedelta(minutes=minutes)},
        # Imports whose task never reached the broker (e.g. Redis was down) are queued again.
        "labeling-resume-imports": {"task": "labeling.tasks.resume_stalled_imports", "schedule": requeue},
        # Production traffic against each served version's training data (docs/OPERATIONS.md, "Monitoring").
        "feedback-drift-checks": {
            "task": "feedback.tasks.request_due_drift_checks",
            "schedule": timedelta(minutes=max(1, settings.DRIFT_CHECK_MINUTES)),
        },
        # Challenger against champion on logged traffic: promote, step its share up, or roll it back.
        "feedback-release-rules": {
            "task": "feedback.tasks.evaluate_all_release_rules",
            "schedule": timedelta(minutes=max(1, settings.RELEASE_CHECK_MINUTES)),
        },
    }


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: Any) -> None:
    sender.conf.beat_schedule = _beat_schedule()


@signals.worker_ready.connect
def _sweep_when_a_worker_starts(sender: Any = None, **kwargs: Any) -> None:
    """A worker that comes back after a crash resumes (or fails) the runs its predecessor left without a
    heartbeat at once, instead of at the next beat."""
    from modeling.tasks import sweep_stale_runs
    from sceneclf_site.queueing import send_task_quietly

    send_task_quietly(sweep_stale_runs, args=[])


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_worker_logs(logger: Any, **kwargs: Any) -> None:
    """The worker replaces Django's log handlers with its own: they get the same filter (no user text)."""
    from sceneclf_site.log_filters import RedactUserText

    for handler in logger.handlers:
        handler.addFilter(RedactUserText())


@app.task(name="sceneclf.ping", ignore_result=False)
def ping() -> str:
    """Answered by whichever worker consumes the queue it was sent to; the health check uses it."""
    import socket

    return socket.gethostname()
