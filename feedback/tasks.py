"""Celery tasks of monitoring. Thin: each loads an id and calls one service. Drift checks extract features,
so they run on the `ml` queue (sceneclf_site/celery.py routes them); webhook deliveries on `default`."""

from __future__ import annotations

from celery import shared_task

from feedback.services import monitoring


@shared_task(name="feedback.tasks.check_drift", acks_late=True, reject_on_worker_lost=True)
def check_drift(check_id: int) -> str:
    return monitoring.run_drift_check(check_id).status


@shared_task(name="feedback.tasks.deliver_alert")
def deliver_alert(alert_id: int) -> str:
    return monitoring.deliver_alert(alert_id).delivery


@shared_task(name="feedback.tasks.request_due_drift_checks")
def request_due_drift_checks() -> list[int]:
    return monitoring.request_due_checks()


@shared_task(name="feedback.tasks.evaluate_release_rule")
def evaluate_release_rule(project_id: int) -> str | None:
    from feedback.services.release import evaluate_release
    from labeling.models import Project

    project = Project.objects.filter(pk=project_id).first()
    verdict = evaluate_release(project=project) if project is not None else None
    return verdict.action if verdict is not None else None


@shared_task(name="feedback.tasks.evaluate_all_release_rules")
def evaluate_all_release_rules() -> dict[str, str]:
    from feedback.services.release import evaluate_all_releases

    return evaluate_all_releases()
