"""Celery tasks of route 1. Thin: each calls one service. Names `modeling.tasks.*` route to the `ml` queue.

`acks_late` + `reject_on_worker_lost` (set app-wide) redeliver a task whose worker died; the service then
sees a run that is already running and marks it failed instead of training twice."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from modeling.services import training


@shared_task(name="modeling.tasks.train_model", acks_late=True, reject_on_worker_lost=True)
def train_model(run_id: int) -> int | None:
    return training.execute_training_run(run_id)


@shared_task(name="modeling.tasks.extract_features", acks_late=True, reject_on_worker_lost=True)
def extract_features(run_id: int) -> int | None:
    return training.execute_extraction_run(run_id)


@shared_task(name="modeling.tasks.sweep_stale_runs")
def sweep_stale_runs() -> int:
    return training.sweep_stale_runs()


def _register_beat() -> None:
    from sceneclf_site.celery import app

    minutes = max(1, min(5, int(getattr(settings, "CELERY_BEAT_INTERVAL_MINUTES", 5))))
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "modeling-sweep-stale-runs": {
            "task": "modeling.tasks.sweep_stale_runs",
            "schedule": timedelta(minutes=minutes),
        },
    }


_register_beat()
from modeling import tasks_al  # noqa: E402, F401  (active-learning tasks, appended for autodiscovery)
