"""Publishing model versions. One published version per project (a DB constraint); publish and roll back
are single transactions, and only a version whose artifact files verify can be published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import Project
from modeling.models import ModelVersion
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError


def verify_version_files(version: ModelVersion) -> None:
    from modeling.engine.artifacts import ArtifactError, verify_artifacts

    folder = Path(version.artifacts_dir)
    try:
        verify_artifacts(folder, version.manifest or None)
    except (ArtifactError, FileNotFoundError, OSError) as exc:
        raise ServiceError(
            gettext("Model v%(number)s cannot be published: its files do not verify (%(exc)s).")
            % {"number": version.number, "exc": exc},
            code="artifacts_invalid",
        ) from exc


def publish_model_version(*, version: ModelVersion, user: Any | None = None) -> ModelVersion:
    """Makes `version` the one served; the previously published version becomes archived."""
    verify_version_files(version)
    with transaction.atomic():
        locked = list(ModelVersion.objects.select_for_update().filter(project_id=version.project_id))
        target = next(v for v in locked if v.pk == version.pk)
        if target.status == ModelVersion.Status.PUBLISHED:
            return target
        # Archive first: the partial unique constraint allows one published row at any moment.
        ModelVersion.objects.filter(project_id=version.project_id, status=ModelVersion.Status.PUBLISHED).update(
            status=ModelVersion.Status.ARCHIVED
        )
        target.status = ModelVersion.Status.PUBLISHED
        target.published_at = timezone.now()
        target.save(update_fields=["status", "published_at"])
    return target


def rollback_model(*, project: Project, user: Any | None = None) -> ModelVersion:
    """Re-publishes the version that was published before the current one."""
    current = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.PUBLISHED).first()
    previous = (
        ModelVersion.objects.filter(project=project, published_at__isnull=False)
        .exclude(status=ModelVersion.Status.PUBLISHED)
        .order_by("-published_at")
        .first()
    )
    if previous is None:
        raise ConflictError(gettext("No earlier published version to roll back to."))
    if current is not None and current.pk == previous.pk:
        raise ConflictError(gettext("The previous version is already published."))
    return publish_model_version(version=previous, user=user)


def archive_model_version(*, version: ModelVersion) -> ModelVersion:
    if version.status == ModelVersion.Status.PUBLISHED:
        raise ConflictError(
            gettext("Model v%(number)s is being served; publish another version or roll back before archiving it.")
            % {"number": version.number}
        )
    if version.status != ModelVersion.Status.ARCHIVED:
        version.status = ModelVersion.Status.ARCHIVED
        version.save(update_fields=["status"])
    return version


def get_version(*, project: Project, number: int) -> ModelVersion:
    version = ModelVersion.objects.filter(project=project, number=number).first()
    if version is None:
        raise NotFoundError(gettext("No model version v%(number)s in this project.") % {"number": number})
    return version
