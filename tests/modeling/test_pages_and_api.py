from __future__ import annotations

import pytest

from modeling.models import ModelVersion, TrainingRun
from modeling.services import training
from tests.modeling.route1 import tiny_params


@pytest.mark.django_db(transaction=True)
def test_owner_trains_and_publishes_from_the_model_page(client, owner, no_auto_retrain, scene_project, tiny_backbone):
    client.force_login(owner)
    page = client.get("/projects/alpha/models/")
    assert page.status_code == 200 and "Start training" in page.content.decode()

    response = client.post(
        "/projects/alpha/models/train/", {"route": "probe", "backbone": str(tiny_backbone)}, follow=True
    )
    assert response.status_code == 200
    run = TrainingRun.objects.get()
    assert run.status == "succeeded", run.error
    version = run.model_version

    client.post(f"/projects/alpha/models/v{version.number}/publish/")
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.PUBLISHED

    html = client.get("/projects/alpha/models/").content.decode()
    assert "<svg" in html  # server-rendered reliability / confusion / risk-coverage plots
    assert "Macro-F1" in html and "Per class" in html
    assert client.get(f"/projects/alpha/models/v{version.number}/").status_code == 200
    assert client.get("/projects/alpha/models/v99/").status_code == 404


@pytest.mark.django_db
def test_runs_partial_polls_only_while_a_run_is_active(client, annotator, scene_project):
    client.force_login(annotator)
    TrainingRun.objects.create(project=scene_project, status="running", stage="extracting features", progress=0.4)
    html = client.get("/projects/alpha/models/runs/").content.decode()
    assert 'hx-trigger="every 2s"' in html and "extracting features" in html
    TrainingRun.objects.update(status="failed")
    assert "hx-trigger" not in client.get("/projects/alpha/models/runs/").content.decode()


@pytest.mark.django_db
def test_annotator_sees_models_but_cannot_train_or_publish(client, annotator, scene_project):
    client.force_login(annotator)
    page = client.get("/projects/alpha/models/")
    assert page.status_code == 200 and "Start training" not in page.content.decode()
    assert client.post("/projects/alpha/models/train/", {"route": "tfidf"}).status_code == 403
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_non_member_gets_404(client, make_user, scene_project):
    client.force_login(make_user("stranger"))
    assert client.get("/projects/alpha/models/").status_code == 404


@pytest.mark.django_db
def test_page_load_sweeps_dead_runs(client, owner, scene_project):
    from datetime import timedelta

    from django.utils import timezone

    dead = TrainingRun.objects.create(
        project=scene_project, status="running", heartbeat_at=timezone.now() - timedelta(hours=2)
    )
    client.force_login(owner)
    client.get("/projects/alpha/models/")
    dead.refresh_from_db()
    assert dead.status == "failed"


@pytest.mark.django_db(transaction=True)
def test_api_train_cancel_publish_rollback(client, owner, no_auto_retrain, scene_project, tiny_backbone):
    client.force_login(owner)
    created = client.post(
        "/api/v1/projects/alpha/training-runs",
        {"route": "probe", "params": tiny_params(tiny_backbone)},
        content_type="application/json",
    )
    assert created.status_code == 202, created.content
    assert created.json()["status"] == "succeeded"  # sent after the commit; eager Celery in tests
    assert created.json()["model_version"] == 1
    second = training.start_training_run(project=scene_project, route="tfidf")

    runs = client.get("/api/v1/projects/alpha/training-runs").json()
    assert [r["id"] for r in runs] == [second.id, created.json()["id"]]
    assert client.post("/api/v1/projects/alpha/models/1/publish").json()["status"] == "published"
    assert client.post("/api/v1/projects/alpha/models/2/publish").json()["status"] == "published"
    rolled = client.post("/api/v1/projects/alpha/models/rollback")
    assert rolled.json()["number"] == 1
    detail = client.get("/api/v1/projects/alpha/models/1").json()
    assert detail["ref"] == "alpha@v1" and len(detail["backbone_fingerprint"]) == 64
    assert detail["metrics"]["test"]["macro_f1"] is not None
    conflict = client.post(f"/api/v1/projects/alpha/training-runs/{second.id}/cancel")
    assert conflict.status_code == 409 and "already succeeded" in conflict.json()["error"]["message"]
    assert client.get("/api/v1/projects/alpha/models/9").status_code == 404


@pytest.mark.django_db
def test_api_rejects_bad_training_input_and_roles(client, owner, reviewer, scene_project):
    client.force_login(owner)
    bad = client.post("/api/v1/projects/alpha/training-runs", {"route": "gpt9"}, content_type="application/json")
    assert bad.status_code == 400 and "gpt9" in bad.json()["error"]["message"]
    client.force_login(reviewer)
    assert client.get("/api/v1/projects/alpha/models").status_code == 200
    forbidden = client.post("/api/v1/projects/alpha/training-runs", {"route": "tfidf"}, content_type="application/json")
    assert forbidden.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_extract_features_run_fills_the_cache(client, owner, no_auto_retrain, scene_project, tiny_backbone):
    client.force_login(owner)
    client.post("/projects/alpha/models/extract/", {"backbone": str(tiny_backbone)})
    first = TrainingRun.objects.get(trigger="extract")
    assert first.status == "succeeded", first.error
    assert first.params["n_extracted"] == first.params["n_texts"] > 0
    client.post("/projects/alpha/models/extract/", {"backbone": str(tiny_backbone)})
    second = TrainingRun.objects.filter(trigger="extract").exclude(pk=first.pk).get()
    assert second.params["n_extracted"] == 0
    assert not ModelVersion.objects.exists()
    # Training afterwards finds every text in the cache: extraction and training share the feature config.
    run = training.start_training_run(project=scene_project, params=tiny_params(tiny_backbone))
    run.refresh_from_db()
    assert run.status == "succeeded" and run.timings["n_extracted"] == 0
