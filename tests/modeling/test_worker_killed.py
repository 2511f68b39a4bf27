"""A Celery worker killed (SIGKILL) mid-training: within about a minute its run is failed from the stale
heartbeat and the project can train again; the killed run never gains a model version."""

from __future__ import annotations

import signal
import time

import pytest

from modeling.models import ModelVersion, TrainingRun
from modeling.services import training
from sceneclf_site.api_errors import ConflictError
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts
from tests.worker import wait_for


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_killed_worker_frees_the_project_within_a_minute(project, tiny_backbone, settings, monkeypatch):
    from tests.worker import running_worker

    settings.ARTIFACT_ROOT = settings.DATA_DIR / "artifacts"  # the worker's own (it reads SCENECLF_DATA_DIR)
    settings.FEATURE_CACHE_DIR = settings.DATA_DIR / "features"
    monkeypatch.setenv("TORCH_THREADS", "1")
    project.retrain_every_n_gold = 1_000_000  # no automatic retrain: this test's run is the only one
    project.save(update_fields=["retrain_every_n_gold"])
    taxonomy = publish_scene_taxonomy(project)
    add_gold_items(project, scene_texts(20), taxonomy)
    # An MLP that never early-stops: training runs until the worker is killed.
    params = {"backbone": str(tiny_backbone), "head_kind": "mlp", "hybrid": False, "max_epochs": 1_000_000,
              "patience": 1_000_000}  # fmt: skip

    with running_worker(queues="ml") as worker:
        run = training.start_training_run(project=project, params=params)
        wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, stage="training", status="running").exists(),
            timeout=120,
            what="the run to reach the training stage",
        )
        time.sleep(1.0)  # well inside the endless training loop
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

        killed_at = time.monotonic()

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # nobody finished it: the worker died mid-run
    with pytest.raises(ConflictError):
        training.start_training_run(project=project, route="tfidf")  # the heartbeat is still fresh

    def start_again():
        try:
            return training.start_training_run(project=project, route="tfidf")
        except ConflictError:
            return None

    # No beat here: the start itself fails runs whose heartbeat is older than TRAINING_STALE_AFTER_SECONDS.
    second = wait_for(start_again, timeout=90, what="the project to accept a new run")
    waited = time.monotonic() - killed_at
    assert waited <= settings.TRAINING_STALE_AFTER_SECONDS + 15, waited
    print(f"project trains again {waited:.1f} s after the SIGKILL")

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "heartbeat" in run.error
    assert not ModelVersion.objects.filter(run=run).exists()
    final_dir = training.artifacts_dir_for(run)
    assert not final_dir.exists()
    assert not list(final_dir.parent.glob(f".{final_dir.name}*")) if final_dir.parent.exists() else True

    with running_worker(queues="ml"):  # a fresh ML worker takes the new run from the queue
        wait_for(
            lambda: TrainingRun.objects.filter(pk=second.pk, status__in=["succeeded", "failed"]).exists(),
            timeout=120,
            what="the new run to finish",
        )
    second.refresh_from_db()
    assert second.status == TrainingRun.Status.SUCCEEDED, second.error
    assert list(ModelVersion.objects.filter(project=project).values_list("run_id", flat=True)) == [second.pk]
