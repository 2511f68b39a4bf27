"""Writes for projects, memberships and API tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from labeling.authentication import hash_token
from labeling.models import ApiToken, Membership, Project, Role
from labeling.services.taxonomy import create_initial_draft
from sceneclf_site.api_errors import NotFoundError, ServiceError

User = get_user_model()


@transaction.atomic
def create_project(*, slug: str, name: str, owner: Any | None = None, **settings_fields: Any) -> Project:
    """A project always starts with a draft taxonomy holding its fallback label (其他)."""
    if Project.objects.filter(slug=slug).exists():
        raise ServiceError(f"A project with slug '{slug}' already exists.", code="duplicate")
    project = Project.objects.create(slug=slug, name=name, **settings_fields)
    create_initial_draft(project)
    if owner is not None:
        add_member(project=project, user=owner, role=Role.OWNER)
    return project


def add_member(*, project: Project, user: Any, role: str) -> Membership:
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'. Use one of: {', '.join(Role.values)}.")
    membership, _ = Membership.objects.get_or_create(project=project, user=user, role=role)
    return membership


def remove_member(*, project: Project, user: Any, role: str) -> None:
    Membership.objects.filter(project=project, user=user, role=role).delete()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown to the owner once; never stored


def create_api_token(*, project: Project, name: str, created_by: Any | None = None) -> IssuedToken:
    name = (name or "").strip()
    if not name:
        raise ServiceError("A token needs a name, so you can tell tokens apart when revoking.")
    secret = "sc_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project, name=name[:100], prefix=secret[:10], token_hash=hash_token(secret), created_by=created_by
    )
    return IssuedToken(token=token, secret=secret)


def revoke_api_token(*, project: Project, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(project=project, pk=token_id).first()
    if token is None:
        raise NotFoundError("No such token in this project.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
