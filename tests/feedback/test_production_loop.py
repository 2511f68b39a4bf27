"""The production loop on real services (PostgreSQL, Redis, a real Celery worker): predict → feedback with a
correction → review task → a reviewer accepts it → gold → automatic retrain on the worker → the new version is
the challenger at the starting share (10 %) → traffic is split by session → the dashboard shows both."""

from __future__ import annotations

import time

import pytest

from labeling.models import ReviewTask
from labeling.services.review import resolve_review_task
from modeling.models import ModelVersion, TrainingRun, VersionEvent
from modeling.services import aliases
from modeling.services.publish_gate import update_publish_gate
from modeling.services.traffic import session_bucket
from tests.feedback.test_release import answering_params
from tests.modeling.route1 import start_and_run
from tests.worker import running_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_feedback_to_gold_to_retrain_to_challenger_to_dashboard(
    settings,
    no_auto_retrain,  # before scene_project: its gold labels start no retrain
    client,
    owner,
    reviewer,
    scene_project,
    tiny_backbone,
    token_client,
):
    settings.ARTIFACT_ROOT = settings.DATA_DIR / "artifacts"  # the worker's own (it reads SCENECLF_DATA_DIR)
    settings.FEATURE_CACHE_DIR = settings.DATA_DIR / "features"
    champion = start_and_run(scene_project, params=answering_params(tiny_backbone), auto_publish=True).model_version
    assert champion.status == "published"
    # One more gold label should not block the new version on noise of a 20-item validation set.
    update_publish_gate(project=scene_project, max_f1_drop=0.1, abstain_band=0.3)
    scene_project.retrain_every_n_gold = 1
    scene_project.save(update_fields=["retrain_every_n_gold"])

    with running_worker():
        answer = token_client.post(
            "/api/v1/projects/alpha/predict", {"text": "我的退货申请一直没人处理", "session_id": "u-1"}, format="json"
        ).json()
        stored = token_client.post(
            "/api/v1/projects/alpha/feedback",
            {"request_id": answer["request_id"], "correct_label": "售后"},
            format="json",
        ).json()["results"][0]
        task = ReviewTask.objects.get(pk=stored["review_task_id"])
        assert task.kind == ReviewTask.Kind.FEEDBACK and task.status == ReviewTask.Status.OPEN

        resolve_review_task(project=scene_project, task_id=task.pk, resolved_by=reviewer, action="confirm")
        wait_for(
            lambda: (
                ModelVersion.objects.filter(project=scene_project, alias="challenger").exists()
                or TrainingRun.objects.filter(project=scene_project, trigger="auto_retrain", status="failed").exists()
            ),
            timeout=600,
            what="the automatic retrain",
        )
        run = TrainingRun.objects.get(project=scene_project, trigger="auto_retrain")
        assert run.status == "succeeded", run.error
        challenger = ModelVersion.objects.get(project=scene_project, alias="challenger")

        rule = aliases.release_rule_for(scene_project)
        assert challenger.run_id == run.pk and rule.challenger_share == pytest.approx(0.10)
        event = VersionEvent.objects.get(version=challenger, kind=VersionEvent.Kind.ALIAS_SET)
        assert event.rule == "auto_retrain" and event.share == pytest.approx(0.10)
        champion.refresh_from_db()
        assert champion.status == "published"  # never replaced silently

        sessions = [f"user-{i}" for i in range(200)]
        served = {
            s: token_client.post(
                "/api/v1/projects/alpha/predict", {"text": "快递还没到", "session_id": s}, format="json"
            ).json()["model_version"]
            for s in sessions
        }
    expected = {s: challenger.ref if session_bucket(rule.salt, s) < 0.10 else champion.ref for s in sessions}
    assert served == expected and challenger.ref in served.values()

    client.force_login(owner)
    dashboard = client.get("/api/v1/projects/alpha/monitoring").json()
    shown = {(v["version"], v["role"]): v["total"]["volume"] for v in dashboard["versions"]}
    assert shown[(f"v{champion.number}", "champion")] == 1 + list(served.values()).count(champion.ref)
    assert shown[(f"v{challenger.number}", "challenger")] == list(served.values()).count(challenger.ref)
