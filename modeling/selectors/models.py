"""Reads of training runs and model versions."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.translation import gettext

from labeling.models import Project
from modeling.models import ModelVersion, TrainingRun
from sceneclf_site.api_errors import NotFoundError


def run_list(project: Project, *, limit: int = 50) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).select_related("created_by").order_by("-created_at")[:limit]


def run_get(project: Project, run_id: int) -> TrainingRun:
    run = TrainingRun.objects.filter(project=project, pk=run_id).first()
    if run is None:
        raise NotFoundError(gettext("No training run #%(run_id)s in this project.") % {"run_id": run_id})
    return run


def active_runs(project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(
        project=project, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    )


def version_list(project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("taxonomy", "run").order_by("-number")


def version_get(project: Project, number: int) -> ModelVersion:
    version = ModelVersion.objects.filter(project=project, number=number).select_related("taxonomy", "run").first()
    if version is None:
        raise NotFoundError(gettext("No model version v%(number)s in this project.") % {"number": number})
    return version


def published_version(project: Project) -> ModelVersion | None:
    """The champion (modeling.selectors.aliases holds the other aliases)."""
    from modeling.selectors.aliases import champion_version

    return champion_version(project)


def can_roll_back(project: Project) -> bool:
    return (
        ModelVersion.objects.filter(project=project, published_at__isnull=False)
        .exclude(status=ModelVersion.Status.PUBLISHED)
        .exists()
    )
