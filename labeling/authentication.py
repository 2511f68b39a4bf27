"""Project API tokens for predict clients: `Authorization: Token <secret>`.

The secret is shown once at creation; only its sha256 is stored, so a database leak reveals none."""

from __future__ import annotations

import hashlib

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions

from labeling.models import ApiToken


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


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
        secret = secret.strip()
        if not secret:
            raise exceptions.AuthenticationFailed("Empty API token.")
        token = ApiToken.objects.select_related("project").filter(token_hash=hash_token(secret)).first()
        if token is None or not token.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return TokenUser(token), token

    def authenticate_header(self, request) -> str:  # type: ignore[no-untyped-def]
        return self.keyword
