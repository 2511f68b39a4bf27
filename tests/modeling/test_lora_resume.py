"""A `lora` run in a real Celery worker: progress with an ETA, checkpoints in the run's folder, a SIGKILLed
worker's run resumed from its last checkpoint by the next worker, and cancel."""

from __future__ import annotations

import signal
import time

import pytest

from modeling.models import ModelVersion, TrainingRun
from modeling.services import training
from tests.modeling.route1 import DEMO_LABELS, add_gold_items, publish_scene_taxonomy, scene_texts
from tests.worker import running_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

STALE_AFTER = 6


@pytest.fixture
def tiny_decoder(tmp_path_factory):
    from tests.engine.tiny import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-decoder-resume") / "tiny-qwen"
    make_tiny_backbone(path, kind="decoder", texts=[t for t, _ in scene_texts(40)] + DEMO_LABELS + ["其他"])
    return path


@pytest.fixture
def lora_project(project, settings, monkeypatch):
    # The worker reads its settings from the environment (tests/worker.py); this process reads `settings`.
    settings.ARTIFACT_ROOT = settings.DATA_DIR / "artifacts"
    settings.FEATURE_CACHE_DIR = settings.DATA_DIR / "features"
    settings.TRAINING_STALE_AFTER_SECONDS = STALE_AFTER
    monkeypatch.setenv("TORCH_THREADS", "1")
    monkeypatch.setenv("TRAINING_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("TRAINING_STALE_AFTER_SECONDS", str(STALE_AFTER))
    project.retrain_every_n_gold = 1_000_000
    project.save(update_fields=["retrain_every_n_gold"])
    add_gold_items(project, scene_texts(20), publish_scene_taxonomy(project))  # 66 train texts, 22 val
    return project


def lora_params(decoder) -> dict:
    return {"backbone": str(decoder), "epochs": 5.0, "batch_size": 1, "checkpoint_every": 10, "warmup_steps": 0,
            "dtype": "fp32", "max_len": 48, "lr": 1e-3}  # fmt: skip


def training_with_checkpoint(run: TrainingRun) -> TrainingRun | None:
    fresh = TrainingRun.objects.get(pk=run.pk)
    # Progress is written at most once a second: wait for a report with its ETA as well as for a checkpoint
    # (five epochs of 66 texts, so that the run is still going by then on a fast machine).
    reported = fresh.eta_seconds is not None
    return fresh if fresh.stage == "training" and reported and training.has_checkpoint(fresh) else None


def test_a_killed_worker_s_lora_run_resumes_from_its_checkpoint(lora_project, tiny_decoder, settings):
    with running_worker(queues="default,ml") as worker:
        run = training.start_training_run(project=lora_project, route="lora", params=lora_params(tiny_decoder))
        seen = wait_for(lambda: training_with_checkpoint(run), timeout=240, what="a checkpoint")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert seen.status == TrainingRun.Status.RUNNING
    assert 0.6 <= seen.progress < 0.9 and seen.eta_seconds is not None and seen.eta_seconds > 0  # progress + ETA
    checkpoint = training.checkpoint_dir_for(run)
    assert checkpoint.parent.parent == settings.ARTIFACT_ROOT / "runs"
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # nobody finished it: the worker died mid-run

    time.sleep(STALE_AFTER + 1)  # its heartbeat is stale now
    # The worker coming back sweeps at once and resumes the run; its solo pool answers the readiness ping only
    # after that, hence the long timeout.
    with running_worker(queues="default,ml", timeout=600):
        wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed", "cancelled"]).exists(),
            timeout=300,
            what="the resumed run to finish",
        )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.error, run.log)
    version = ModelVersion.objects.get(run=run)
    report = version.metrics["fit_report"]
    assert report["resumed_from_step"] > 0 and report["resumed_from_step"] % 10 == 0
    assert report["steps"] == report["planned_steps"] and report["stopped_by"] == "epochs"
    assert f"resumed from the checkpoint at step {report['resumed_from_step']}" in run.log
    assert "queued again to resume" in run.log
    assert not checkpoint.parent.exists()  # removed after success


def test_cancel_stops_a_lora_run_and_removes_its_checkpoint(lora_project, tiny_decoder):
    with running_worker(queues="ml"):
        run = training.start_training_run(project=lora_project, route="lora", params=lora_params(tiny_decoder))
        wait_for(lambda: training_with_checkpoint(run), timeout=240, what="a checkpoint")
        training.cancel_training_run(run=run)
        wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed", "cancelled"]).exists(),
            timeout=60,
            what="the run to stop",
        )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED, (run.error, run.log)
    assert not ModelVersion.objects.filter(run=run).exists()
    assert not training.checkpoint_dir_for(run).parent.exists()
