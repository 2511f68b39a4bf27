"""Anything that can end or change a token's rights replaces the "api-tokens" change stamp, so every process
drops the tokens it remembered (labeling/authentication.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from labeling.models import ApiToken, Membership, Project
from sceneclf_site.change_stamps import mark_changed


def _token_rights_changed(sender: Any, **kwargs: Any) -> None:
    from labeling.authentication import TOKEN_STAMP

    mark_changed(TOKEN_STAMP)


def connect() -> None:
    for model in (ApiToken, Membership, Project, settings.AUTH_USER_MODEL):
        post_save.connect(_token_rights_changed, sender=model, dispatch_uid=f"token-rights-save-{model}")
        post_delete.connect(_token_rights_changed, sender=model, dispatch_uid=f"token-rights-delete-{model}")
