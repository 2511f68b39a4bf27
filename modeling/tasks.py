"""Celery tasks of route 1. Thin: each calls one service. Names `modeling.tasks.*` route to the `ml` queue.

`acks_late` + `reject_on_worker_lost` (set app-wide) redeliver a task whose worker died; the service then
sees a run that is already running and marks it failed instead of training twice."""

from __future__ import annotations

from celery import shared_task

from modeling.services import training


@shared_task(name="modeling.tasks.train_model", acks_late=True, reject_on_worker_lost=True)
def train_model(run_id: int) -> int | None:
    return training.execute_training_run(run_id)


@shared_task(name="modeling.tasks.extract_features", acks_late=True, reject_on_worker_lost=True)
def extract_features(run_id: int) -> int | None:
    return training.execute_extraction_run(run_id)


@shared_task(name="modeling.tasks.sweep_stale_runs", queue="default")
def sweep_stale_runs() -> int:
    return training.sweep_stale_runs()


@shared_task(name="modeling.tasks.requeue_waiting_runs", queue="default")
def requeue_waiting_runs() -> list[int]:
    return training.requeue_waiting_runs()


from modeling import tasks_al  # noqa: E402, F401  (active-learning tasks, appended for autodiscovery)
