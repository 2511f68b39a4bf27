"""Publishing model versions. The published version is the champion (modeling.services.aliases holds the
challenger and the shadow). One champion per project (a DB constraint); making one and rolling it back are
single transactions, each written to the versions' history, and only a version whose artifact files verify
can become the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import Project
from modeling.models import Alias, ModelVersion, VersionEvent
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


def record_version_event(
    *,
    version: ModelVersion,
    kind: str,
    alias: str = "",
    share: float | None = None,
    user: Any | None = None,
    rule: str = "",
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> VersionEvent:
    actor = user if getattr(user, "is_authenticated", False) else None
    return VersionEvent.objects.create(
        project_id=version.project_id,
        version=version,
        kind=kind,
        alias=alias,
        share=share,
        actor=actor,
        rule=rule,
        reason=reason,
        figures=figures or {},
    )


def publish_model_version(
    *,
    version: ModelVersion,
    user: Any | None = None,
    kind: str = VersionEvent.Kind.ALIAS_SET,
    rule: str = "",
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> ModelVersion:
    """Makes `version` the champion (it drops the challenger or shadow alias it held); the previous champion
    becomes archived."""
    verify_version_files(version)
    with transaction.atomic():
        locked = list(ModelVersion.objects.select_for_update().filter(project_id=version.project_id))
        target = next(v for v in locked if v.pk == version.pk)
        if target.status == ModelVersion.Status.PUBLISHED:
            return target
        previous = next((v for v in locked if v.status == ModelVersion.Status.PUBLISHED), None)
        # Archive first: the partial unique constraint allows one published row at any moment.
        ModelVersion.objects.filter(project_id=version.project_id, status=ModelVersion.Status.PUBLISHED).update(
            status=ModelVersion.Status.ARCHIVED
        )
        held = target.alias
        target.status, target.alias = ModelVersion.Status.PUBLISHED, ""
        target.published_at = timezone.now()
        target.save(update_fields=["status", "alias", "published_at"])
        record_version_event(
            version=target, kind=kind, alias=Alias.CHAMPION, user=user, rule=rule, reason=reason, figures=figures
        )
        if previous is not None:
            record_version_event(
                version=previous,
                kind=VersionEvent.Kind.ALIAS_REMOVED,
                alias=Alias.CHAMPION,
                user=user,
                rule=rule,
                reason=gettext("v%(number)s became the champion.") % {"number": target.number},
            )
        if held == Alias.CHALLENGER:
            from modeling.services.aliases import reset_challenger_share

            reset_challenger_share(project_id=target.project_id)
    return target


def rollback_model(*, project: Project, user: Any | None = None, rule: str = "", reason: str = "") -> ModelVersion:
    """Makes the version that was champion before the current one the champion again."""
    current = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.PUBLISHED).first()
    previous = (
        ModelVersion.objects.filter(project=project, published_at__isnull=False)
        .exclude(status=ModelVersion.Status.PUBLISHED)
        .order_by("-published_at")
        .first()
    )
    if previous is None:
        raise ConflictError(gettext("No earlier champion to roll back to."))
    if current is not None and current.pk == previous.pk:
        raise ConflictError(gettext("The previous version is already the champion."))
    why = reason or gettext("Champion rolled back from v%(number)s.") % {"number": current.number if current else "-"}
    return publish_model_version(version=previous, user=user, kind=VersionEvent.Kind.ROLLED_BACK, rule=rule, reason=why)


def archive_model_version(*, version: ModelVersion) -> ModelVersion:
    if version.status == ModelVersion.Status.PUBLISHED:
        raise ConflictError(
            gettext("Model v%(number)s is the champion; make another version champion or roll back first.")
            % {"number": version.number}
        )
    if version.alias:
        raise ConflictError(
            gettext("Model v%(number)s is the %(alias)s; remove that alias before archiving it.")
            % {"number": version.number, "alias": version.get_alias_display()}
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
