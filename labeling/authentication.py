"""Project API tokens for predict clients: `Authorization: Token <secret>`.

The secret is shown once at creation; only its sha256 is stored, so a database leak reveals none.
A token belongs to its project and is vouched for by the owner who created it: it works only while that
person is an active account and still an owner of the project (or a superuser). Removing the owner ends
their tokens at once; adding them back as owner restores them. Tokens created without a person (from code or
a management command) work until revoked. Wrong tokens are throttled per client address.

A valid token is remembered by each process for API_TOKEN_CACHE_SECONDS under the "api-tokens" change
stamp (sceneclf_site/change_stamps.py): saving or deleting a token, a membership, a user or a project
replaces the stamp, so a revoked token, a removed owner or a deactivated account stops working on the very
next request in every process. `last_used_at` is written at most every API_TOKEN_LAST_USED_SECONDS per token
and process."""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions

from labeling.models import ApiToken, Membership, Role
from sceneclf_site.change_stamps import StampedMemo
from sceneclf_site.throttling import FailedTokenThrottle

TOKEN_STAMP = "api-tokens"
_valid_tokens: StampedMemo[ApiToken | None] = StampedMemo(TOKEN_STAMP, lambda: float(settings.API_TOKEN_CACHE_SECONDS))
_last_used_written: dict[str, float] = {}  # by token hash


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def creator_vouches(token: ApiToken) -> bool:
    """Whether the person who created the token may still hand it out (see the module docstring)."""
    creator = token.created_by
    if creator is None:
        return True
    if not creator.is_active:
        return False
    if creator.is_superuser:
        return True
    return Membership.objects.filter(project_id=token.project_id, user=creator, role=Role.OWNER).exists()


class TokenUser(AnonymousUser):
    """The request user for a token client: authenticated for one project, with no other rights."""

    def __init__(self, token: ApiToken) -> None:
        super().__init__()
        self.api_token = token

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"token:{self.api_token.prefix}"


class ProjectTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):  # type: ignore[no-untyped-def]
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() not in {"token", "bearer"}:
            return None
        failures = FailedTokenThrottle()
        wait = failures.wait_if_blocked(request)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many failed API token attempts from this address.")
        token = self._cached_valid_token(secret.strip())
        if token is None:
            failures.record_failure()
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        record_use(token)
        return TokenUser(token), token

    @classmethod
    def _cached_valid_token(cls, secret: str) -> ApiToken | None:
        if not secret:
            return None
        token = _valid_tokens.get(hash_token(secret), lambda: cls._valid_token(secret))
        if token is None:
            # A wrong secret is not remembered: each try is a fresh lookup, counted by the failure throttle.
            _valid_tokens.forget(hash_token(secret))
        return token

    @staticmethod
    def _valid_token(secret: str) -> ApiToken | None:
        if not secret:
            return None
        token = ApiToken.objects.select_related("project", "created_by").filter(token_hash=hash_token(secret)).first()
        if token is None or not token.is_active or not creator_vouches(token):
            return None
        return token

    def authenticate_header(self, request) -> str:  # type: ignore[no-untyped-def]
        return self.keyword


def record_use(token: ApiToken) -> None:
    """Stamps last_used_at, at most every API_TOKEN_LAST_USED_SECONDS per token in this process: a write per
    request would cost more than the rest of the authentication."""
    now = time.monotonic()
    written = _last_used_written.get(token.token_hash)
    if written is not None and now - written < float(settings.API_TOKEN_LAST_USED_SECONDS):
        return
    _last_used_written[token.token_hash] = now
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
