"""The training-run lifecycle under concurrency, and the quality gate of automatic publishing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections  # noqa: F401  (connection: the skipif conditions)
from django.utils import timezone

from modeling.models import ModelVersion, TrainingRun
from modeling.services import publish_gate, training
from modeling.services.active_learning import retrain_if_due
from tests.modeling.route1 import start_and_run, tiny_params

pytestmark = pytest.mark.django_db(transaction=True)


def _in_threads(n: int, work) -> list[object]:
    """Runs `work()` in n threads released together; each thread has its own database connection."""
    barrier = threading.Barrier(n)
    results: list[object] = []
    lock = threading.Lock()

    def body() -> None:
        try:
            barrier.wait()
            outcome = work()
        except Exception as exc:  # collected: the test asserts on what each thread got
            outcome = exc
        finally:
            connections.close_all()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=body) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _one_tfidf_run_long_ago(project) -> None:
    run = start_and_run(project, route="tfidf")
    assert run.status == "succeeded", run.error
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(days=1))


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row-level concurrency needs PostgreSQL")
def test_simultaneous_retrain_checks_start_exactly_one_run(no_auto_retrain, scene_project):
    _one_tfidf_run_long_ago(scene_project)
    scene_project.retrain_every_n_gold = 50  # every gold label is newer than the last run: a retrain is due
    scene_project.save(update_fields=["retrain_every_n_gold"])

    results = _in_threads(6, lambda: retrain_if_due(scene_project))

    started = [r for r in results if isinstance(r, TrainingRun)]
    assert len(started) == 1, results
    assert not [r for r in results if isinstance(r, Exception)], results
    auto = TrainingRun.objects.filter(project=scene_project, trigger="auto_retrain")
    assert auto.count() == 1
    assert auto.get().route == "tfidf"  # the retrain keeps the route of the last successful run
    assert ModelVersion.objects.filter(project=scene_project).count() == 2


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row-level concurrency needs PostgreSQL")
def test_simultaneous_manual_starts_give_one_run_and_conflicts(no_auto_retrain, scene_project):
    results = _in_threads(5, lambda: training.start_training_run(project=scene_project, route="tfidf", dispatch=False))

    assert sum(isinstance(r, TrainingRun) for r in results) == 1, results
    assert all(isinstance(r, TrainingRun) or getattr(r, "status_code", None) == 409 for r in results), results
    assert TrainingRun.objects.filter(project=scene_project).count() == 1


def test_database_refuses_a_second_active_run(no_auto_retrain, scene_project):
    from django.db import IntegrityError, transaction

    TrainingRun.objects.create(project=scene_project, status=TrainingRun.Status.RUNNING)
    for status in TrainingRun.Status.WAITING, TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING:
        with pytest.raises(IntegrityError), transaction.atomic():
            TrainingRun.objects.create(project=scene_project, status=status)
    TrainingRun.objects.create(project=scene_project, status=TrainingRun.Status.FAILED)  # finished ones are free


def test_concurrent_log_lines_are_all_kept(no_auto_retrain, scene_project):
    run = TrainingRun.objects.create(project=scene_project, status=TrainingRun.Status.RUNNING)

    def write_lines() -> None:
        reporter = training.RunReporter(run.pk)
        for i in range(40):
            reporter.log(f"{threading.get_ident()} line {i}")

    _in_threads(4, write_lines)
    run.refresh_from_db()
    assert len(run.log.splitlines()) == 160


def test_heartbeat_thread_beats_while_the_body_is_silent(no_auto_retrain, scene_project):
    old = timezone.now() - timedelta(hours=1)
    run = TrainingRun.objects.create(project=scene_project, status=TrainingRun.Status.RUNNING, heartbeat_at=old)
    with training.Heartbeat(run.pk, every=0.05):
        threading.Event().wait(0.5)  # a long step without any progress callback
    run.refresh_from_db()
    assert run.heartbeat_at > old + timedelta(minutes=59)
    assert training.sweep_stale_runs(project=scene_project) == 0


def test_a_duplicate_task_for_a_live_run_is_ignored(no_auto_retrain, scene_project, tiny_backbone):
    run = TrainingRun.objects.create(
        project=scene_project,
        params=tiny_params(tiny_backbone),
        status=TrainingRun.Status.RUNNING,
        heartbeat_at=timezone.now(),
    )
    assert training.execute_training_run(run.pk) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # its own worker goes on; the duplicate changed nothing


def test_versions_name_their_validation_set(no_auto_retrain, scene_project):
    first = start_and_run(scene_project, route="tfidf").model_version
    second = start_and_run(scene_project, route="tfidf").model_version
    val_set = first.metrics["val_set"]
    assert val_set == second.metrics["val_set"]
    assert val_set["count"] == first.metrics["counts"]["val"] and len(val_set["sha256"]) == 64

    from labeling.models import Item

    moved = Item.objects.filter(project=scene_project, split="val").order_by("id").first()
    Item.objects.filter(pk=moved.pk).update(split="train")
    third = start_and_run(scene_project, route="tfidf").model_version
    assert third.metrics["val_set"]["sha256"] != val_set["sha256"]

    from modeling.selectors.active_learning import learning_curve

    curve = learning_curve(scene_project)
    assert [p["same_val_set"] for p in curve] == [False, False, True]  # v1, v2 were scored on other items
    assert curve[2]["val_set"] == third.metrics["val_set"]


def _published_tfidf(project) -> ModelVersion:
    version = start_and_run(project, route="tfidf").model_version
    from modeling.services.versions import publish_model_version

    return publish_model_version(version=version)


def test_a_worse_candidate_is_not_auto_published_and_shows_why(client, owner, no_auto_retrain, scene_project,
                                                              tiny_backbone):  # fmt: skip
    current = _published_tfidf(scene_project)
    # Random tiny-backbone features without the char n-gram branch: clearly worse than TF-IDF on these texts.
    params = {**tiny_params(tiny_backbone), "hybrid": False}
    run = start_and_run(scene_project, params=params, auto_publish=True)
    assert run.status == "succeeded", run.error
    candidate = run.model_version

    assert candidate.status == ModelVersion.Status.CANDIDATE
    current.refresh_from_db()
    assert current.status == ModelVersion.Status.PUBLISHED
    gate = candidate.gate
    assert gate["passed"] is False
    assert gate["current"]["version"] == current.number
    assert gate["candidate"]["macro_f1"] < gate["current"]["macro_f1"]
    assert gate["val_set"] == candidate.metrics["val_set"]
    assert "below the published v1" in gate["reason"]
    assert "stays a candidate" in run.log

    client.force_login(owner)
    page = client.get(f"/projects/alpha/models/v{candidate.number}/").content.decode()
    assert "Not published automatically" in page and "below the published v1" in page


def test_an_equal_candidate_passes_and_the_owner_margin_and_band_apply(no_auto_retrain, scene_project):
    current = _published_tfidf(scene_project)
    same = start_and_run(scene_project, route="tfidf", auto_publish=True).model_version
    assert same.gate["passed"] is True, same.gate
    assert same.status == ModelVersion.Status.PUBLISHED
    current.refresh_from_db()
    assert current.status == ModelVersion.Status.ARCHIVED


def test_verdicts_follow_the_owner_settings(no_auto_retrain, scene_project):
    gate = publish_gate.update_publish_gate(project=scene_project, max_f1_drop=0.02, abstain_band=0.05)
    published = publish_gate.GateScore(macro_f1=0.899, abstain_rate=0.10)

    slightly_worse = publish_gate._verdict(publish_gate.GateScore(0.885, 0.11), published, 3, gate, 200)
    assert slightly_worse["passed"] is True
    much_worse = publish_gate._verdict(publish_gate.GateScore(0.852, 0.10), published, 3, gate, 200)
    assert much_worse["passed"] is False and "0.047 below the published v3 (0.899)" in much_worse["reason"]
    abstains_more = publish_gate._verdict(publish_gate.GateScore(0.95, 0.30), published, 3, gate, 200)
    assert abstains_more["passed"] is False and "Abstain rate 30.0%" in abstains_more["reason"]
    abstains_less = publish_gate._verdict(publish_gate.GateScore(0.95, 0.01), published, 3, gate, 200)
    assert abstains_less["passed"] is False

    from sceneclf_site.api_errors import ServiceError

    with pytest.raises(ServiceError):
        publish_gate.update_publish_gate(project=scene_project, max_f1_drop=-0.1, abstain_band=0.05)


def test_owner_sets_the_gate_on_the_model_page(client, owner, annotator, no_auto_retrain, scene_project):
    client.force_login(owner)
    client.post("/projects/alpha/models/gate/", {"max_f1_drop": "0.01", "abstain_band": "0.1"})
    gate = publish_gate.gate_for(scene_project)
    assert (gate.max_f1_drop, gate.abstain_band) == (0.01, 0.1)
    client.force_login(annotator)
    assert client.post("/projects/alpha/models/gate/", {"max_f1_drop": "0.5", "abstain_band": "0.5"}).status_code == 403
    gate.refresh_from_db()
    assert gate.max_f1_drop == 0.01


def test_a_gate_that_cannot_compare_keeps_the_candidate_and_the_run_succeeds(
    no_auto_retrain, scene_project, monkeypatch
):
    current = _published_tfidf(scene_project)

    def unreadable(version, texts, label_keys):
        raise OSError("artifact folder is gone")

    monkeypatch.setattr(publish_gate, "score_version", unreadable)
    run = start_and_run(scene_project, route="tfidf", auto_publish=True)
    assert run.status == "succeeded", run.error
    assert run.model_version.status == ModelVersion.Status.CANDIDATE
    assert run.model_version.gate["passed"] is False and "artifact folder is gone" in run.model_version.gate["reason"]
    current.refresh_from_db()
    assert current.status == ModelVersion.Status.PUBLISHED


def test_a_version_published_during_the_comparison_is_never_replaced_blindly(
    no_auto_retrain, scene_project, monkeypatch
):
    from modeling.services.versions import publish_model_version

    _published_tfidf(scene_project)
    other = start_and_run(scene_project, route="tfidf").model_version  # v2, a candidate
    real_score = publish_gate.score_version

    def owner_publishes_meanwhile(version, texts, label_keys):
        score = real_score(version, texts, label_keys)
        if version.number == 1:  # the gate is scoring the published v1 ...
            publish_model_version(version=other)  # ... while the owner publishes v2 by hand
        return score

    monkeypatch.setattr(publish_gate, "score_version", owner_publishes_meanwhile)
    candidate = start_and_run(scene_project, route="tfidf", auto_publish=True).model_version
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert candidate.gate["passed"] is False and "v2 was published during the comparison" in candidate.gate["reason"]
    other.refresh_from_db()
    assert other.status == ModelVersion.Status.PUBLISHED
