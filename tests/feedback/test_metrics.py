"""GET /metrics: Prometheus text that prometheus_client's parser reads, counting predicts per version and
abstentions, guarded by address or bearer token, and added up across processes in multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


@pytest.mark.django_db
def test_metrics_count_a_predict_per_version(client, published_model, token_client):
    version = published_model.ref
    key = ("sceneclf_predictions_total", (("project", "alpha"), ("version", version)))
    abstained_key = ("sceneclf_abstentions_total", (("project", "alpha"), ("version", version)))
    before = scrape(client)

    body = token_client.post(
        "/api/v1/projects/alpha/predict", {"texts": ["快递没到", "天气不错"]}, format="json"
    ).json()
    token_client.post("/api/v1/projects/alpha/feedback", {"request_id": body["results"][0]["request_id"],
                                                          "outcome": "resolved"}, format="json")  # fmt: skip

    after = scrape(client)
    assert after[key] - before.get(key, 0.0) == 2
    abstained = sum(result["abstained"] for result in body["results"])
    assert after.get(abstained_key, 0.0) - before.get(abstained_key, 0.0) == abstained
    route = "api/v1/projects/<slug:slug>/predict"
    request_key = ("sceneclf_http_requests_total", (("endpoint", route), ("method", "POST"), ("status", "200")))
    assert after[request_key] - before.get(request_key, 0.0) == 1
    count_key = ("sceneclf_predict_request_duration_seconds_count", (("project", "alpha"), ("version", version)))
    assert after[count_key] - before.get(count_key, 0.0) == 1
    feedback_key = ("sceneclf_feedback_items_total", (("project", "alpha"), ("status", "stored")))
    assert after[feedback_key] - before.get(feedback_key, 0.0) == 1
    # The training run of the fixture, and the task outcomes of the eager tasks it ran.
    assert after[("sceneclf_training_run_duration_seconds_count", (("route", "probe"), ("status", "succeeded")))] >= 1
    assert after[("sceneclf_celery_tasks_total", (("outcome", "success"), ("task", "modeling.tasks.train_model")))] >= 1
    assert ("sceneclf_queue_depth", (("queue", "ml"),)) in after


@pytest.mark.django_db
def test_metrics_are_guarded(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-scrape").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    settings.METRICS_ALLOWED_IPS = ["10.1.2.3"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


COUNT_ONE = """
from sceneclf_site.metrics import PREDICTIONS
PREDICTIONS.labels("alpha", "alpha@v1").inc({n})
"""
SCRAPE = """
import django
django.setup()
from prometheus_client import generate_latest
from sceneclf_site.metrics import scrape_registry
print(generate_latest(scrape_registry()).decode())
"""


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "sceneclf_site.settings.test",
    }
    for n in (2, 3):  # two processes, as two gunicorn workers would be
        subprocess.run([sys.executable, "-c", COUNT_ONE.format(n=n)], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", SCRAPE], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    parsed = samples(out.stdout)
    assert parsed[("sceneclf_predictions_total", (("project", "alpha"), ("version", "alpha@v1")))] == 5
    assert len(list(tmp_path.glob("*.db"))) >= 2
