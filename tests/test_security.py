"""Limits on every door: login lockout, API throttles (the real default rates), CSP, error pages and the
production settings."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from labeling.services.projects import create_api_token
from sceneclf_site.settings import base as base_settings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def _token_client(secret: str, ip: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


@pytest.fixture
def default_rates(settings):
    """The rates a real deployment runs with (test settings raise them for every other test)."""
    rates = base_settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    return rates


def _first_429(client: APIClient, url: str, limit: int) -> tuple[int, object]:
    for n in range(1, limit + 1):
        response = client.get(url)
        if response.status_code == 429:
            return n, response
        assert response.status_code in (200, 401), response.status_code
    raise AssertionError(f"no 429 in {limit} requests")


def _assert_throttled(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "throttled"


def test_default_predict_rate_answers_429_per_token(default_rates, project, owner):
    allowed = int(default_rates["predict"].split("/")[0])
    client = _token_client(create_api_token(project=project, name="c", created_by=owner).secret)
    n, response = _first_429(client, "/api/v1/projects/alpha/whoami", allowed + 5)
    assert n == allowed + 1
    _assert_throttled(response)


def test_default_rate_for_wrong_tokens_answers_429_per_address(default_rates, project, owner):
    allowed = int(default_rates["token_failure"].split("/")[0])
    n, response = _first_429(_token_client("sc_wrong"), "/api/v1/projects/alpha/whoami", 50)
    assert n == allowed + 1
    _assert_throttled(response)
    good = create_api_token(project=project, name="c", created_by=owner).secret
    # The address is blocked for any token until the window passes; another address is not.
    assert _token_client(good).get("/api/v1/projects/alpha/whoami").status_code == 429
    assert _token_client(good, ip="10.0.0.2").get("/api/v1/projects/alpha/whoami").status_code == 200


def test_token_and_address_limits_are_separate(settings, project, owner):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "token": "3/min", "token_ip": "5/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    first = _token_client(create_api_token(project=project, name="a", created_by=owner).secret)
    second = _token_client(create_api_token(project=project, name="b", created_by=owner).secret)
    assert [first.get("/api/v1/projects/alpha/whoami").status_code for _ in range(4)] == [200, 200, 200, 429]
    # The second token has its own budget, but the address allows five token requests in all (and it counted
    # all four of the first token's, the refused one too).
    assert [second.get("/api/v1/projects/alpha/whoami").status_code for _ in range(3)] == [200, 429, 429]
    assert (
        _token_client(create_api_token(project=project, name="c", created_by=owner).secret, ip="10.0.0.9")
        .get("/api/v1/projects/alpha/whoami")
        .status_code
        == 200
    )


def test_session_users_are_not_limited_by_token_rates(settings, annotator_client_factory):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "token": "1/min", "token_ip": "1/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    client = annotator_client_factory()
    assert {client.get("/api/v1/projects").status_code for _ in range(5)} == {200}


@pytest.fixture
def annotator_client_factory(annotator, project):
    def _make() -> APIClient:
        client = APIClient()
        client.force_authenticate(annotator)
        return client

    return _make


def _login(client: Client, password: str) -> int:
    return client.post("/accounts/login/", {"username": "owner", "password": password}).status_code


def test_repeated_wrong_passwords_lock_the_login_until_reset(owner, settings):
    client = Client(REMOTE_ADDR="10.1.1.1")
    statuses = [_login(client, f"wrong-{n}") for n in range(settings.AXES_FAILURE_LIMIT + 2)]
    assert statuses[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert statuses[-1] == 429
    assert _login(client, "pw-for-tests") == 429  # even the right password, while locked
    page = client.post("/accounts/login/", {"username": "owner", "password": "pw-for-tests"}).content.decode()
    assert "登录失败次数过多" in page and "Too many failed logins" in page
    call_command("axes_reset_username", "owner")
    assert _login(client, "pw-for-tests") == 302


def test_unknown_url_is_a_friendly_page_in_both_languages(client):
    response = client.get("/no/such/page/")
    body = response.content.decode()
    assert response.status_code == 404
    assert "找不到这个页面" in body and "Page not found" in body
    assert "URLconf" not in body and "urlpatterns" not in body


def test_server_error_page_in_both_languages(rf):
    from django.views.defaults import server_error

    response = server_error(rf.get("/"))
    body = response.content.decode()
    assert response.status_code == 500 and "服务器出错了" in body and "went wrong" in body


def test_forbidden_page_in_both_languages(annotator, project):
    client = Client()
    client.force_login(annotator)
    response = client.get("/projects/alpha/settings/")
    body = response.content.decode()
    assert response.status_code == 403 and "没有权限" in body and "Not allowed" in body


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def _project_pages() -> list[str]:
    """Every page of the three apps whose URL needs only the project slug (plus the project list)."""
    from django.urls import get_resolver, reverse

    urls = ["/projects/", "/accounts/login/"]
    for namespace in ("labeling", "modeling", "feedback"):
        resolver = get_resolver().namespace_dict[namespace][1]
        for pattern in resolver.url_patterns:
            converters = set(getattr(pattern.pattern, "converters", {}))
            if converters == {"slug"}:
                urls.append(reverse(f"{namespace}:{pattern.name}", kwargs={"slug": "alpha"}))
    return urls


def test_pages_send_a_strict_csp_and_carry_no_inline_script(owner, project):
    from tests.workspace.factories import make_items, publish_scenes

    publish_scenes(project)
    make_items(project)
    client = Client()
    client.force_login(owner)
    checked = 0
    for url in _project_pages():
        response = client.get(url)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue  # POST-only endpoints, downloads
        checked += 1
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        body = response.content.decode()
        assert not INLINE_SCRIPT.search(body), (url, INLINE_SCRIPT.search(body).group(0))
        assert not INLINE_HANDLER.search(body), (url, INLINE_HANDLER.search(body).group(0))
        assert "<style" not in body, url
    assert checked >= 10


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "sceneclf.example.com",
            "DJANGO_HSTS_SECONDS": "31536000",
            "DJANGO_HSTS_PRELOAD": "1",
        }
    )
    env.update(extra)
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "manage.py", "check", "--deploy", "--settings=sceneclf_site.settings.production"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_the_documented_variables():
    result = _check_deploy(_production_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("key", ["short-key", "dev-only-insecure-key-change-me", "a" * 60])
def test_production_refuses_a_weak_secret_key(key):
    result = _check_deploy(_production_env(DJANGO_SECRET_KEY=key))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(("redis_url", "backend"), [("redis://127.0.0.1:6379/9", "RedisCache"), ("", "DatabaseCache")])
def test_throttle_counters_live_in_a_cache_shared_by_workers(redis_url, backend):
    code = "from sceneclf_site.settings import base; print(base.CACHES['default']['BACKEND'])"
    env = {**os.environ, "REDIS_URL": redis_url}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith(backend), out.stderr


def test_csrf_failure_page_in_both_languages(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/projects/", {"slug": "x", "name": "x"})
    body = response.content.decode()
    assert response.status_code == 403 and "页面已过期" in body and "page expired" in body
