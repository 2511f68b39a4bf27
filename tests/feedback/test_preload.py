"""The web process loads published models at start: the first predict does not pay for loading."""

from __future__ import annotations

import pytest

from modeling.services import serving

pytestmark = pytest.mark.django_db(transaction=True)  # the loading thread has its own database connection


@pytest.fixture
def fresh_process(monkeypatch):
    serving.forget_loaded_models()
    monkeypatch.setattr(serving, "_preload", serving._Preload())
    yield
    serving.forget_loaded_models()


def test_started_web_process_loads_published_models_and_health_says_so(fresh_process, published_model, client):
    serving.forget_loaded_models()
    assert client.get("/api/v1/health").json()["model"]["status"] == "ok"  # not preloading: loads on first use
    thread = serving.start_preload()
    assert client.get("/api/v1/health").json()["model"]["status"] in ("loading", "ok")
    thread.join(timeout=60)
    assert not thread.is_alive()
    response = client.get("/api/v1/health")
    assert response.json()["model"] == {"status": "ok", "loaded": [published_model.ref]}
    assert serving._loaded[published_model.project_id].version_id == published_model.pk


def test_health_answers_200_while_models_are_loading(fresh_process, client):
    serving._preload.state = "loading"
    response = client.get("/api/v1/health")
    assert response.status_code == 200, response.json()
    assert response.json()["model"]["status"] == "loading"
