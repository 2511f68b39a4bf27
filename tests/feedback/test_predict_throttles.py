"""The predict endpoint checks all its rate scopes with one cache read and one write: the limits still hold
per scope, and a refused request is counted as DRF counts it."""

from __future__ import annotations

from django.core.cache import cache
from rest_framework.test import APIClient

from labeling.services.projects import create_api_token


def _client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def _predict(client: APIClient, slug: str) -> int:
    return client.post(f"/api/v1/projects/{slug}/predict", {"text": "快递没到"}, format="json").status_code


def test_predict_limits_hold_per_token_and_per_address(published_model, owner, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "predict": "3/min", "predict_ip": "5/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    slug = published_model.project.slug
    first = _client(create_api_token(project=published_model.project, name="a", created_by=owner).secret)
    second = _client(create_api_token(project=published_model.project, name="b", created_by=owner).secret)
    assert [_predict(first, slug) for _ in range(4)] == [200, 200, 200, 429]
    # Its own predict budget, but the address allows five predicts in all and counted the refused one too.
    assert [_predict(second, slug) for _ in range(2)] == [200, 429]
    refused = first.post(f"/api/v1/projects/{slug}/predict", {"text": "快递没到"}, format="json")
    assert int(refused["Retry-After"]) >= 1 and refused.json()["error"]["code"] == "throttled"


def test_every_scope_reads_and_writes_in_one_call_each(published_model, owner, monkeypatch):
    calls: list[str] = []
    inside: list[str] = []
    for name in ("get", "set", "get_many", "set_many"):
        original = getattr(cache, name)

        def spy(keys, *a, _o=original, _n=name, **k):  # type: ignore[no-untyped-def]
            names = keys if isinstance(keys, list | dict) else [keys]
            if not inside and any("throttle_" in str(key) and "token_failure" not in str(key) for key in names):
                calls.append(_n)
            inside.append(_n)  # LocMemCache's get_many calls its own get per key: count the outer call only
            try:
                return _o(keys, *a, **k)
            finally:
                inside.pop()

        monkeypatch.setattr(cache, name, spy)
    client = _client(create_api_token(project=published_model.project, name="a", created_by=owner).secret)
    assert _predict(client, published_model.project.slug) == 200
    assert calls == ["get_many", "set_many"]
    keys = [key for key in cache._cache if "throttle_" in key]  # LocMemCache: the stored histories
    assert len(keys) == 4  # token, token_ip, predict, predict_ip
