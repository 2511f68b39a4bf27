"""A Celery worker killed (SIGKILL) mid-training leaves a failed run after the sweep, and no model version."""

from __future__ import annotations

import signal
import time

import pytest

from modeling.models import ModelVersion, TrainingRun
from modeling.services import training
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_killed_worker_leaves_failed_run_and_no_version(project, tiny_backbone, settings, monkeypatch):
    from tests.worker import running_worker

    settings.ARTIFACT_ROOT = settings.DATA_DIR / "artifacts"  # the worker's own (it reads SCENECLF_DATA_DIR)
    settings.FEATURE_CACHE_DIR = settings.DATA_DIR / "features"
    monkeypatch.setenv("TORCH_THREADS", "1")
    project.retrain_every_n_gold = 1_000_000  # no automatic retrain: this test's run is the only one
    project.save(update_fields=["retrain_every_n_gold"])
    taxonomy = publish_scene_taxonomy(project)
    add_gold_items(project, scene_texts(20), taxonomy)
    # An MLP that never early-stops: training runs until the worker is killed.
    params = {"backbone": str(tiny_backbone), "head_kind": "mlp", "hybrid": False,
              "head_options": {"max_epochs": 1_000_000, "patience": 1_000_000}}  # fmt: skip

    with running_worker(queues="ml") as worker:
        run = training.start_training_run(project=project, params=params)
        _wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, stage="training head", status="running").exists(),
            timeout=120,
            what="the run to reach the training stage",
        )
        time.sleep(1.0)  # well inside the endless training loop
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # nobody finished it: the worker died mid-run
    assert training.sweep_stale_runs(project=project, stale_after=0) == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "heartbeat" in run.error
    assert not ModelVersion.objects.filter(project=project).exists()
    final_dir = training.artifacts_dir_for(run)
    assert not final_dir.exists()
    assert not list(final_dir.parent.glob(f".{final_dir.name}*")) if final_dir.parent.exists() else True
