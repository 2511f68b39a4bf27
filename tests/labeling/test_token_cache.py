"""API tokens are remembered per process, yet a token revoked in another process stops at once: the cache is
shared (Redis, as in production) and the revocation replaces the token change stamp."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from django.db import connection
from rest_framework.test import APIClient

from labeling.models import ApiToken
from labeling.services.projects import create_api_token
from tests.worker import ROOT, database_url_for_worker

pytestmark = pytest.mark.django_db(transaction=True)

REVOKE = textwrap.dedent(
    """
    import sys
    import django
    django.setup()
    from django.test.utils import override_settings
    override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                          "LOCATION": sys.argv[2], "KEY_PREFIX": "token-cache-test"}}).enable()
    from labeling.models import Project
    from labeling.services.projects import revoke_api_token
    project = Project.objects.get(slug="alpha")
    revoke_api_token(project=project, token_id=int(sys.argv[1]))
    """
)


@pytest.fixture
def shared_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.REDIS_URL, "KEY_PREFIX": "token-cache-test"}}  # fmt: skip
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def whoami(client: APIClient) -> int:
    return client.get("/api/v1/projects/alpha/whoami").status_code


def test_a_token_revoked_in_another_process_stops_on_the_next_request(project, shared_cache, settings):
    issued = create_api_token(project=project, name="client")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued.secret}")
    assert whoami(client) == 200
    assert whoami(client) == 200  # remembered: no token query this time
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sceneclf_site.settings.test",
           "DATABASE_URL": database_url_for_worker()}  # fmt: skip
    subprocess.run([sys.executable, "-c", REVOKE, str(issued.token.pk), settings.REDIS_URL], cwd=ROOT, env=env,
                   check=True)  # fmt: skip
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert whoami(client) == 401


def test_a_remembered_token_needs_no_token_query(project, shared_cache):
    issued = create_api_token(project=project, name="client")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued.secret}")
    assert whoami(client) == 200
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert whoami(client) == 200
    assert not [q for q in captured.captured_queries if "labeling_apitoken" in q["sql"]]
