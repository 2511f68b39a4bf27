"""Object permissions per project role. Views and pages ask these, never roles directly."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext
from rest_framework import permissions

from labeling.models import Project, Role

# What each action needs. An owner can do everything in their project.
ACTION_ROLES: dict[str, set[str]] = {
    "view": {Role.OWNER, Role.ANNOTATOR, Role.REVIEWER},
    "annotate": {Role.OWNER, Role.ANNOTATOR},
    "review": {Role.OWNER, Role.REVIEWER},
    "adjudicate": {Role.OWNER, Role.REVIEWER},
    "edit_taxonomy": {Role.OWNER},
    "manage": {Role.OWNER},  # import, settings, tokens, training, publishing
    "predict": {Role.OWNER, Role.REVIEWER, Role.ANNOTATOR},
}


def user_roles(user: Any, project: Project) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    token = getattr(user, "api_token", None)
    if token is not None:
        # A token acts only on its own project, and only to predict.
        return {"token"} if token.project_id == project.id else set()
    if user.is_superuser:
        return {Role.OWNER}
    return set(project.memberships.filter(user=user).values_list("role", flat=True))


def can_create_projects(user: Any) -> bool:
    """Site setting PROJECT_CREATORS: "staff" (staff, superusers, members of PROJECT_CREATORS_GROUP) or
    "everyone" (any signed-in person). Token clients never create projects."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "api_token", None) is not None:
        return False
    if settings.PROJECT_CREATORS == "everyone" or user.is_staff or user.is_superuser:
        return True
    return user.groups.filter(name=settings.PROJECT_CREATORS_GROUP).exists()


def can(user: Any, project: Project, action: str) -> bool:
    roles = user_roles(user, project)
    if "token" in roles:
        return action == "predict"
    return bool(roles & ACTION_ROLES[action])


def _token_project(user: Any, slug: str) -> Project | None:
    """A token client's own project, as authentication loaded it (kept current by the token change stamp)."""
    token = getattr(user, "api_token", None)
    if token is not None and token.project.slug == slug:
        return token.project
    return None


def get_project_for(user: Any, slug: str, action: str) -> Project:
    """The project, or 404 when the user is no member (hides existence), or 403 when the role is short."""
    # A project that is not yours reads exactly like one that does not exist: the answer reveals nothing.
    project = _token_project(user, slug) or Project.objects.filter(slug=slug).first()
    if project is None or not user_roles(user, project):
        raise Http404(gettext("No such project."))
    if not can(user, project, action):
        raise PermissionDenied(f"Your role in this project does not allow '{action}'.")
    return project


class CanCreateProjects(permissions.BasePermission):
    """DRF permission for creating a project (reads pass)."""

    message = "You may not create projects; ask an administrator to add you to the project creators."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        return request.method in permissions.SAFE_METHODS or can_create_projects(request.user)


class ProjectActionPermission(permissions.BasePermission):
    """DRF permission: the view sets `project_action`; the URL carries `slug`."""

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401 (not a 404 that would hide a login problem)
        slug = view.kwargs.get("slug")
        if slug is None:
            return True
        action = getattr(view, "project_action", "view")
        if request.method in permissions.SAFE_METHODS:
            action = getattr(view, "project_read_action", action)
        view.project = get_project_for(request.user, slug, action)
        return True
