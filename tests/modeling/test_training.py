from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from labeling.services.projects import create_project
from modeling.engine.artifacts import verify_artifacts
from modeling.models import ModelVersion, TrainingRun
from modeling.services import training
from sceneclf_site.api_errors import ConflictError, ServiceError
from tests.modeling.route1 import start_and_run, tiny_params


def _train(project, backbone, **kwargs) -> TrainingRun:
    return start_and_run(project, params=tiny_params(backbone), **kwargs)


@pytest.mark.django_db
def test_training_run_creates_a_verified_candidate_version(scene_project, tiny_backbone, owner):
    run = _train(scene_project, tiny_backbone, user=owner)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.progress == 1.0 and run.stage == "done"
    version = ModelVersion.objects.get(run=run)
    assert version.status == ModelVersion.Status.CANDIDATE
    assert version.number == 1
    assert len(version.backbone_fingerprint) == 64
    assert "其他" in version.label_keys and "支付" in version.label_keys
    assert version.training_snapshot and all(len(pair) == 2 for pair in version.training_snapshot)
    verify_artifacts(Path(version.artifacts_dir), version.manifest)
    for key in ("accuracy", "macro_f1", "per_class", "confusion", "calibration", "risk_coverage", "abstention"):
        assert key in version.metrics["test"], key
    assert version.metrics["counts"]["val"] >= 20
    record = json.loads((Path(version.artifacts_dir) / "version.json").read_text())
    assert record["route"] == "probe" and record["describe"]["backbone_fingerprint"] == version.backbone_fingerprint
    assert record["describe"]["max_len"] is not None  # fixed at training time, reused when serving


@pytest.mark.django_db
def test_retrain_on_seen_items_extracts_nothing(scene_project, tiny_backbone):
    first = _train(scene_project, tiny_backbone)
    second = _train(scene_project, tiny_backbone)

    assert first.timings["n_extracted"] == first.timings["n_texts"] > 0
    assert second.status == TrainingRun.Status.SUCCEEDED
    assert second.timings["n_extracted"] == 0
    assert ModelVersion.objects.filter(project=scene_project).count() == 2


@pytest.mark.django_db
def test_tfidf_route_needs_no_backbone(scene_project):
    run = start_and_run(scene_project, route="tfidf")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = run.model_version
    assert version.route == "tfidf" and version.backbone_fingerprint == ""
    assert version.metrics["test"]["macro_f1"] > 0.8  # keyword-separable synthetic scenes


@pytest.mark.django_db
def test_auto_publish_publishes_the_new_version(scene_project, tiny_backbone):
    run = _train(scene_project, tiny_backbone, auto_publish=True)
    assert run.model_version.status == ModelVersion.Status.PUBLISHED


@pytest.mark.django_db
def test_training_refuses_without_published_taxonomy_or_val(project, scene_project, tiny_backbone):
    from labeling.models import Item

    Item.objects.filter(project=scene_project, split="val").update(split="train")
    with pytest.raises(ServiceError, match="validation split"):
        training.start_training_run(project=scene_project, params=tiny_params(tiny_backbone))
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_unknown_params_and_backbone_give_clear_errors(scene_project, tiny_backbone):
    with pytest.raises(ServiceError, match="Invalid training parameters"):
        training.start_training_run(project=scene_project, params={**tiny_params(tiny_backbone), "head_kind": "x"})
    with pytest.raises(ServiceError, match="not usable"):
        training.start_training_run(project=scene_project, params={"backbone": "/nonexistent/folder"})


@pytest.mark.django_db
def test_second_run_while_one_is_active_is_refused(scene_project, tiny_backbone):
    TrainingRun.objects.create(project=scene_project, status=TrainingRun.Status.RUNNING)
    with pytest.raises(ConflictError):
        training.start_training_run(project=scene_project, params=tiny_params(tiny_backbone))


@pytest.mark.django_db
def test_cancel_queued_run_and_cancel_requested_before_first_stage(scene_project, tiny_backbone):
    queued = TrainingRun.objects.create(project=scene_project, params=tiny_params(tiny_backbone))
    training.cancel_training_run(run=queued)
    queued.refresh_from_db()
    assert queued.status == TrainingRun.Status.CANCELLED
    assert training.execute_training_run(queued.id) is None  # the task finds it finished and does nothing

    running = TrainingRun.objects.create(
        project=scene_project, params=tiny_params(tiny_backbone), cancel_requested=True
    )
    assert training.execute_training_run(running.id) is None
    running.refresh_from_db()
    assert running.status == TrainingRun.Status.CANCELLED
    assert not ModelVersion.objects.exists()
    with pytest.raises(ConflictError):
        training.cancel_training_run(run=running)


@pytest.mark.django_db
def test_redelivered_task_of_a_running_run_fails_it(scene_project, tiny_backbone):
    run = TrainingRun.objects.create(
        project=scene_project, params=tiny_params(tiny_backbone), status=TrainingRun.Status.RUNNING
    )
    assert training.execute_training_run(run.id) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "lost" in run.error
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_sweeper_fails_only_stale_running_runs(scene_project):
    old = timezone.now() - timedelta(hours=1)
    other, third = (create_project(slug=slug, name=slug) for slug in ("other", "third"))
    stale = TrainingRun.objects.create(project=scene_project, status="running", heartbeat_at=old)
    fresh = TrainingRun.objects.create(project=other, status="running", heartbeat_at=timezone.now())
    queued = TrainingRun.objects.create(project=third)

    assert training.sweep_stale_runs(stale_after=600) == 1
    for run in (stale, fresh, queued):
        run.refresh_from_db()
    assert stale.status == "failed" and "heartbeat" in stale.error
    assert fresh.status == "running" and queued.status == "queued"


def _with_checkpoint(run: TrainingRun) -> Path:
    folder = training.checkpoint_dir_for(run)
    folder.mkdir(parents=True)
    (folder / "train_state.pt").write_bytes(b"state")
    return folder


@pytest.mark.django_db
def test_sweeper_queues_a_stale_run_with_a_checkpoint_again(scene_project, django_capture_on_commit_callbacks):
    old = timezone.now() - timedelta(hours=1)
    resumable = TrainingRun.objects.create(project=scene_project, route="lora", status="running", heartbeat_at=old)
    folder = _with_checkpoint(resumable)
    lost = TrainingRun.objects.create(project=create_project(slug="b", name="b"), status="running", heartbeat_at=old)
    training.checkpoint_dir_for(lost).mkdir(parents=True)
    (training.checkpoint_dir_for(lost) / "train_state.tmp").write_bytes(b"half")  # killed mid-write: no checkpoint
    task_id = resumable.task_id
    renamed = training.artifacts_dir_for(resumable)  # the lost worker got as far as renaming its version folder
    renamed.mkdir(parents=True)

    with django_capture_on_commit_callbacks() as sends:
        assert training.sweep_stale_runs(stale_after=600) == 2
    resumable.refresh_from_db()
    lost.refresh_from_db()
    assert resumable.status == "waiting" and "resume" in resumable.stage and resumable.task_id != task_id
    assert "queued again to resume from its checkpoint" in resumable.log
    assert len(sends) == 1 and folder.exists() and not renamed.exists()
    assert lost.status == "failed" and not training.checkpoint_dir_for(lost).parent.exists()
    with pytest.raises(ConflictError):  # a new start does not replace the run waiting to resume
        training.start_training_run(project=scene_project, route="tfidf")

    training.cancel_training_run(run=resumable)
    resumable.refresh_from_db()
    assert resumable.status == "cancelled" and not folder.parent.exists()


@pytest.mark.django_db
def test_cancel_reads_the_run_s_status_from_the_database(scene_project):
    run = TrainingRun.objects.create(project=scene_project, status="queued")
    TrainingRun.objects.filter(pk=run.pk).update(status="running")  # a worker claimed it since it was read
    assert training.cancel_training_run(run=run).cancel_requested  # the worker stops at its next check
    assert run.status == "running"


@pytest.mark.django_db
def test_redelivered_task_of_a_lost_run_with_a_checkpoint_resumes_it(scene_project):
    old = timezone.now() - timedelta(hours=1)
    started = timezone.now() - timedelta(hours=2)
    run = TrainingRun.objects.create(
        project=scene_project, route="tfidf", status="running", heartbeat_at=old, started_at=started
    )
    folder = _with_checkpoint(run)

    version_id = training.execute_training_run(run.id)

    run.refresh_from_db()
    assert run.status == "succeeded" and version_id == ModelVersion.objects.get(run=run).pk
    assert "resuming from its checkpoint" in run.log and run.started_at == started
    assert not folder.parent.exists()  # removed after success


@pytest.mark.django_db
def test_engine_failure_marks_run_failed_with_message(scene_project, tiny_backbone):
    run = TrainingRun.objects.create(
        project=scene_project, params={**tiny_params(tiny_backbone), "min_val_size": 10_000}
    )
    training.execute_training_run(run.id)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "validation split" in run.error
    assert not ModelVersion.objects.exists()
    assert not list(training.artifacts_dir_for(run).parent.glob(f"*run-{run.id}*"))


@pytest.mark.django_db
def test_run_swept_while_still_working_never_gains_a_version(scene_project, tiny_backbone, monkeypatch):
    """A slow-but-alive worker whose run was already failed by the sweeper must not publish anything."""
    original = training._create_version

    def swept_first(run, *args, **kwargs):
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, error="swept")
        return original(run, *args, **kwargs)

    monkeypatch.setattr(training, "_create_version", swept_first)
    run = TrainingRun.objects.create(project=scene_project, params=tiny_params(tiny_backbone))
    assert training.execute_training_run(run.id) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.error == "swept"
    assert not ModelVersion.objects.exists()
    assert not list(training.artifacts_dir_for(run).parent.glob(f"*run-{run.id}-*"))
