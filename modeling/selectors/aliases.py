"""Reads of the registry aliases: which version is champion, challenger and shadow, the release rule and the
versions' history. The champion is the published version; challenger and shadow are `ModelVersion.alias`."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from labeling.models import Project
from modeling.models import Alias, ModelVersion, ReleaseRule, VersionEvent

DEFAULT_SHARE_STEPS = (0.10, 0.25, 1.0)


@dataclass(frozen=True)
class ServingAliases:
    """What one predict request needs to route itself: version ids and the challenger's share."""

    champion_id: int | None
    challenger_id: int | None
    shadow_id: int | None
    challenger_share: float
    salt: str


def champion_version(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, status=ModelVersion.Status.PUBLISHED).first()


def champion_version_id(project: Project) -> int | None:
    return (
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.PUBLISHED)
        .values_list("id", flat=True)
        .first()
    )


def alias_version(project: Project, alias: str) -> ModelVersion | None:
    if alias == Alias.CHAMPION:
        return champion_version(project)
    return ModelVersion.objects.filter(project=project, alias=alias).first()


def alias_map(project: Project) -> dict[str, ModelVersion | None]:
    """{"champion": v, "challenger": v or None, "shadow": v or None}."""
    held = {
        (Alias.CHAMPION.value if v.status == ModelVersion.Status.PUBLISHED else v.alias): v
        for v in ModelVersion.objects.filter(project=project)
        .filter(Q(status=ModelVersion.Status.PUBLISHED) | ~Q(alias=""))
        .select_related("taxonomy")
    }
    return {alias.value: held.get(alias.value) for alias in Alias}


def alias_of(version: ModelVersion) -> str | None:
    if version.status == ModelVersion.Status.PUBLISHED:
        return Alias.CHAMPION.value
    return version.alias or None


def serving_aliases(project: Project) -> ServingAliases:
    rows = list(
        ModelVersion.objects.filter(project=project)
        .filter(Q(status=ModelVersion.Status.PUBLISHED) | ~Q(alias=""))
        .values_list("id", "status", "alias")
    )
    champion = next((pk for pk, status, _ in rows if status == ModelVersion.Status.PUBLISHED), None)
    challenger = next((pk for pk, _, alias in rows if alias == Alias.CHALLENGER), None)
    shadow = next((pk for pk, _, alias in rows if alias == Alias.SHADOW), None)
    share, salt = 0.0, ""
    if challenger is not None:
        values = ReleaseRule.objects.filter(project=project).values_list("challenger_share", "salt").first()
        share, salt = values if values else (0.0, "")
    return ServingAliases(champion, challenger, shadow, float(share), salt)


def share_steps(rule: ReleaseRule) -> list[float]:
    return sorted(float(step) for step in (rule.share_steps or DEFAULT_SHARE_STEPS))


def starting_share(rule: ReleaseRule) -> float:
    return share_steps(rule)[0]


def version_events(project: Project, *, version: ModelVersion | None = None, limit: int = 50) -> QuerySet[VersionEvent]:
    events = VersionEvent.objects.filter(project=project).select_related("version", "actor")
    if version is not None:
        events = events.filter(version=version)
    return events[:limit]


def last_step_event(version: ModelVersion) -> VersionEvent | None:
    """The event that started the challenger's current window: it was made challenger or its share moved."""
    return (
        VersionEvent.objects.filter(
            version=version,
            kind__in=[VersionEvent.Kind.ALIAS_SET, VersionEvent.Kind.SHARE_CHANGED],
            alias=Alias.CHALLENGER,
        )
        .order_by("-created_at", "-id")
        .first()
    )
