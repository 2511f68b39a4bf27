"""Reads for projects, memberships and API tokens."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from labeling.models import ApiToken, GoldLabel, Item, Membership, Project
from labeling.permissions import ACTION_ROLES, can, user_roles
from labeling.selectors.taxonomy import current_draft, latest_published


def projects_for_user(user: Any) -> QuerySet[Project]:
    """Projects the user is a member of (all projects for a superuser); token clients see none."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "api_token", None) is not None:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all().order_by("name")
    return Project.objects.filter(memberships__user=user).distinct().order_by("name")


def project_permissions(user: Any, project: Project) -> dict[str, bool]:
    """{action: allowed} for every project action, for templates and API clients."""
    return {action: can(user, project, action) for action in ACTION_ROLES}


def roles_of(user: Any, project: Project) -> list[str]:
    return sorted(user_roles(user, project))


def project_stats(project: Project) -> dict[str, Any]:
    """Counts for the project dashboard; other apps add their own figures in their templates."""
    gold = GoldLabel.objects.filter(item__project=project)
    published = latest_published(project)
    draft = current_draft(project)
    return {
        "items": Item.objects.filter(project=project).count(),
        "gold_labels": gold.count(),
        "gold_needs_recheck": gold.filter(needs_recheck=True).count(),
        "members": Membership.objects.filter(project=project).values("user").distinct().count(),
        "published_taxonomy": published,
        "published_label_count": published.labels.count() if published else 0,
        "draft_taxonomy": draft,
    }


def members_of(project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("user__username", "role")


def tokens_of(project: Project) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(project=project).select_related("created_by").order_by("-created_at")
