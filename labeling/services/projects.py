"""Writes for projects, memberships and API tokens."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.authentication import hash_token
from labeling.models import ApiToken, Invitation, Membership, Project, Role
from labeling.pii import FIELD_MODES
from labeling.services.taxonomy import create_initial_draft
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError

User = get_user_model()
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@transaction.atomic
def create_project(*, slug: str, name: str, owner: Any | None = None, **settings_fields: Any) -> Project:
    """A project always starts with a draft taxonomy holding its fallback label (其他)."""
    slug = (slug or "").strip()
    if not SLUG_PATTERN.match(slug):
        raise ServiceError(
            gettext(
                "A slug uses up to 64 lowercase letters, digits, hyphens and underscores, starting with a letter or "
                "digit."
            )
        )
    if not (name or "").strip():
        raise ServiceError(gettext("A project needs a name."))
    if Project.objects.filter(slug=slug).exists():
        raise ServiceError(gettext("A project with slug '%(slug)s' already exists.") % {"slug": slug}, code="duplicate")
    project = Project.objects.create(slug=slug, name=name, **settings_fields)
    create_initial_draft(project)
    if owner is not None:
        add_member(project=project, user=owner, role=Role.OWNER)
    return project


def add_member(*, project: Project, user: Any, role: str) -> Membership:
    if role not in Role.values:
        raise ServiceError(
            gettext("Unknown role '%(role)s'. Use one of: %(value)s.") % {"role": role, "value": ", ".join(Role.values)}
        )
    membership, _ = Membership.objects.get_or_create(project=project, user=user, role=role)
    return membership


@transaction.atomic
def add_member_by_username(*, project: Project, username: str, role: str) -> Membership:
    user = User.objects.filter(username=(username or "").strip()).first()
    if user is None:
        raise ServiceError(gettext("No user named '%(username)s'.") % {"username": username}, code="unknown_user")
    return add_member(project=project, user=user, role=role)


@transaction.atomic
def remove_member(*, project: Project, user: Any, role: str) -> None:
    # Lock the project's owner rows so two owners removing each other cannot leave it ownerless.
    owners = list(Membership.objects.select_for_update().filter(project=project, role=Role.OWNER))
    if role == Role.OWNER and [m.user_id for m in owners] == [user.pk]:
        raise ConflictError(gettext("A project needs at least one owner; add another owner first."), code="last_owner")
    Membership.objects.filter(project=project, user=user, role=role).delete()


def remove_membership(*, project: Project, membership_id: int) -> None:
    membership = Membership.objects.filter(project=project, pk=membership_id).select_related("user").first()
    if membership is None:
        raise NotFoundError(gettext("No such membership in this project."))
    remove_member(project=project, user=membership.user, role=membership.role)


ABSTAIN_TARGET_KINDS = ("precision", "coverage", "macro_f1", "balanced", "in_scope_acc")
SETTINGS_FIELDS = (
    "name",
    "description",
    "keep_raw_text",
    "pii_field_mode",
    "overlap_k",
    "agreement_share",
    "agreement_threshold",
    "show_model_suggestion",
    "abstain_target_kind",
    "abstain_target",
    "retrain_every_n_gold",
    "alert_webhook_url",
)
WEBHOOK_SCHEMES = ("http", "https")


def _settings_problems(values: dict[str, Any]) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not str(values["name"]).strip():
        problems["name"] = "A project needs a name."
    if not 1 <= values["overlap_k"] <= 10:
        problems["overlap_k"] = "Annotators per item must be between 1 and 10."
    for name in ("agreement_share", "agreement_threshold"):
        if not 0.0 <= values[name] <= 1.0:
            problems[name] = "Must be between 0 and 1."
    if values["abstain_target_kind"] not in ABSTAIN_TARGET_KINDS:
        problems["abstain_target_kind"] = f"Use one of: {', '.join(ABSTAIN_TARGET_KINDS)}."
    if not 0.0 < values["abstain_target"] <= 1.0:
        problems["abstain_target"] = "Must be above 0 and at most 1."
    if values["pii_field_mode"] not in FIELD_MODES:
        problems["pii_field_mode"] = f"Use one of: {', '.join(FIELD_MODES)}."
    if values["retrain_every_n_gold"] < 1:
        problems["retrain_every_n_gold"] = "Must be at least 1."
    webhook = str(values["alert_webhook_url"] or "").strip()
    if webhook and (urlsplit(webhook).scheme.lower() not in WEBHOOK_SCHEMES or not urlsplit(webhook).hostname):
        problems["alert_webhook_url"] = "Use an http:// or https:// URL with a host."
    return problems


@transaction.atomic
def update_project_settings(*, project: Project, **changes: Any) -> Project:
    """Change the owner-editable settings; every value is checked before anything is saved."""
    unknown = sorted(set(changes) - set(SETTINGS_FIELDS))
    if unknown:
        raise ServiceError(
            gettext("Unknown or read-only project field(s): %(value)s.") % {"value": ", ".join(unknown)},
            code="unknown_field",
        )
    values = {name: changes.get(name, getattr(project, name)) for name in SETTINGS_FIELDS}
    problems = _settings_problems(values)
    if problems:
        raise ServiceError(gettext("Invalid project settings."), code="invalid_settings", details=problems)
    for name, value in changes.items():
        setattr(project, name, value.strip() if isinstance(value, str) else value)
    project.save(update_fields=list(changes) or None)
    return project


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown to the owner once; never stored


def create_api_token(*, project: Project, name: str, created_by: Any | None = None) -> IssuedToken:
    name = (name or "").strip()
    if not name:
        raise ServiceError(gettext("A token needs a name, so you can tell tokens apart when revoking."))
    secret = "sc_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project, name=name[:100], prefix=secret[:10], token_hash=hash_token(secret), created_by=created_by
    )
    return IssuedToken(token=token, secret=secret)


def revoke_api_token(*, project: Project, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(project=project, pk=token_id).first()
    if token is None:
        raise NotFoundError(gettext("No such token in this project."))
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


INVITATION_DAYS = 7


@dataclass
class IssuedInvitation:
    invitation: Invitation
    secret: str  # goes into the link shown to the owner once; never stored


def create_invitation(*, project: Project, role: str, created_by: Any | None = None) -> IssuedInvitation:
    if role not in Role.values:
        raise ServiceError(f"Unknown role '{role}'. Use one of: {', '.join(Role.values)}.")
    secret = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        project=project,
        role=role,
        token_hash=hash_token(secret),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=INVITATION_DAYS),
    )
    return IssuedInvitation(invitation=invitation, secret=secret)


def open_invitation(secret: str) -> Invitation:
    """The unused, unexpired invitation behind a link, or NotFoundError (the same for every kind of bad link)."""
    invitation = (
        Invitation.objects.select_related("project")
        .filter(token_hash=hash_token(secret or ""), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if invitation is None:
        raise NotFoundError("This invitation link is not valid: it was used already, has expired or is mistyped.")
    return invitation


def _new_account(username: str, password: str) -> Any:
    username = (username or "").strip()
    if not username or User.objects.filter(username__iexact=username).exists():
        raise ServiceError(
            gettext("The username '%(username)s' is taken or empty; choose another.") % {"username": username[:150]},
            code="username_taken",
        )
    try:
        validate_password(password, User(username=username))
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), code="weak_password") from exc
    return User.objects.create_user(username=username, password=password)


@transaction.atomic
def create_member_account(*, project: Project, username: str, password: str, role: str) -> Membership:
    """An owner creates someone's account directly (username and a first password they hand over) with a role
    in this project; the password rules are the site's."""
    if role not in Role.values:
        raise ServiceError(
            gettext("Unknown role '%(role)s'. Use one of: %(value)s.") % {"role": role, "value": ", ".join(Role.values)}
        )
    return add_member(project=project, user=_new_account(username, password), role=role)


@transaction.atomic
def accept_invitation(*, secret: str, username: str, password: str) -> Any:
    """Create the invitee's account with their own password and give it the invited role. A link works once."""
    invitation = open_invitation(secret)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.used_at is not None:
        raise NotFoundError("This invitation link is not valid: it was used already, has expired or is mistyped.")
    user = _new_account(username, password)
    add_member(project=invitation.project, user=user, role=invitation.role)
    invitation.used_at = timezone.now()
    invitation.used_by = user
    invitation.save(update_fields=["used_at", "used_by"])
    return user
