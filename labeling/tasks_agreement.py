"""Celery task: recompute inter-annotator agreement (queue `default`). Thin: the work is in the service."""

from __future__ import annotations

from celery import shared_task

from labeling.models import Project
from labeling.services.agreement import compute_agreement


@shared_task(name="labeling.tasks_agreement.compute_agreement")
def compute_agreement_task(project_id: int) -> list[int]:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return []
    return [report.pk for report in compute_agreement(project)]
