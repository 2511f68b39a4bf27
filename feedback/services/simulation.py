"""The production loop, simulated on labelled files through the app's own services.

A throw-away project is made from the files' labels; the train and val files become its gold labels and a
model trained on them becomes the champion. The stream then goes through `predict_for_project` in batches
(requests of a few texts, each with a session id, so the canary split applies). For each batch, feedback is
sent for a share of the items with the file's label as the correction, a reviewer confirms every review task
the corrections opened (gold, method feedback), the release rule is evaluated, a drift check compares the
batch with the champion's training data, and, when no challenger is under test, the automatic retrain runs
and its version becomes the challenger (or shadow) as the rule says. Tasks run in this process. The project
and its files are deleted at the end unless `keep` is set.

Per batch: `accuracy`, `macro_f1` and `abstain_rate` over every item; `realised_accuracy` over the feedback
items alone; `estimated_accuracy` is the mean calibrated confidence of the answers (CBPE, as the dashboard);
`drift_score` is the batch's novelty share (the share of its texts farther from the training snapshot than
95 % of training texts are; about 0.05 without drift, see modeling.engine.evaluation.drift), `drift_alert`
whether any of the check's alerts fired (novelty share, domain AUC or predicted labels)."""

from __future__ import annotations

import random
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from sklearn.metrics import f1_score

from feedback.services.feedback import submit_feedback
from feedback.services.monitoring import request_drift_check
from feedback.services.predict import PredictRequest, predict_for_project
from feedback.services.release import evaluate_release
from labeling.models import GoldLabel, Project, Role, TaxonomyVersion
from labeling.services.gold import set_gold
from labeling.services.items import get_or_create_item
from labeling.services.projects import add_member, create_project
from labeling.services.review import resolve_review_task
from labeling.services.splits import assign_splits
from labeling.services.taxonomy import add_label, publish_draft
from modeling.models import Alias, ModelVersion, TrainingRun
from modeling.selectors.aliases import alias_map
from modeling.services import aliases as alias_services
from modeling.services.label_quality import read_labelled_jsonl
from modeling.services.training import execute_training_run, start_training_run
from modeling.services.versions import publish_model_version
from sceneclf_site.api_errors import ServiceError

FALLBACK_KEY = "其他"


@dataclass(frozen=True)
class SimulationConfig:
    train: Path
    val: Path
    stream: Path
    feedback_rate: float = 0.1
    batch: int = 500
    fallback_label: str | None = None
    route: str = "probe"
    params: dict[str, Any] = field(default_factory=dict)
    request_size: int = 16
    sessions: int = 1000
    min_labelled: int = 20
    retrain_alias: str = Alias.CHALLENGER
    seed: int = 0
    keep: bool = False


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]


def run_simulation(config: SimulationConfig, *, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    _check(config)
    files = {name: _read(getattr(config, name), config.fallback_label) for name in ("train", "val", "stream")}
    rng = random.Random(config.seed)
    with _tasks_in_process():
        project, reviewer = _make_project(files, config)
        try:
            log(f"project {project.slug}: {len(files['train'].texts)} train, {len(files['val'].texts)} val gold")
            champion = _train(project, config, trigger="cli")
            publish_model_version(version=champion)
            log(f"champion v{champion.number}")
            batches = []
            stream = files["stream"]
            for number, start in enumerate(range(0, len(stream.texts), config.batch), start=1):
                chunk = Labelled(
                    stream.texts[start : start + config.batch], stream.labels[start : start + config.batch]
                )
                batches.append(_run_batch(project, reviewer, config, number, chunk, rng))
                log(_line(batches[-1]))
            return {"batches": batches, "settings": _settings(config, files)}
        finally:
            if not config.keep:
                _delete(project, reviewer)


def _check(config: SimulationConfig) -> None:
    if not 0.0 < config.feedback_rate <= 1.0:
        raise ServiceError("--feedback-rate must be above 0 and at most 1.")
    if config.batch < 1 or config.request_size < 1:
        raise ServiceError("--batch must be at least 1.")


def _read(path: Path, fallback_label: str | None) -> Labelled:
    data = read_labelled_jsonl(path)
    return Labelled(list(data.texts), [FALLBACK_KEY if label == fallback_label else label for label in data.labels])


@contextmanager
def _tasks_in_process() -> Iterator[None]:
    """Everything the loop queues (release checks, drift checks, pool scoring) runs here, in order."""
    from sceneclf_site.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = previous


def _make_project(files: dict[str, Labelled], config: SimulationConfig) -> tuple[Project, Any]:
    suffix = secrets.token_hex(4)
    reviewer = get_user_model().objects.create_user(username=f"simulated-reviewer-{suffix}")
    # No retrain from the gold hooks: the simulation runs the automatic retrain itself, between batches.
    project = create_project(slug=f"simulation-{suffix}", name="Simulation", retrain_every_n_gold=10**9)
    add_member(project=project, user=reviewer, role=Role.REVIEWER)
    taxonomy = _publish_taxonomy(
        project, sorted({*files["train"].labels, *files["val"].labels, *files["stream"].labels})
    )
    for split in ("train", "val"):
        for text, label in zip(files[split].texts, files[split].labels, strict=True):
            item, _ = get_or_create_item(project=project, text=text, source="simulation")
            if item.split:
                continue  # the same text twice: its first split and label stand
            item.split = split
            item.save(update_fields=["split"])
            set_gold(item=item, label_key=label, taxonomy=taxonomy, method=GoldLabel.Method.IMPORTED)
    alias_services.update_release_rule(
        project=project, min_labelled=config.min_labelled, retrain_alias=config.retrain_alias
    )
    return project, reviewer


def _publish_taxonomy(project: Project, keys: list[str]) -> TaxonomyVersion:
    draft = project.taxonomy_versions.get(status=TaxonomyVersion.Status.DRAFT)
    for key in keys:
        if key != FALLBACK_KEY:
            add_label(draft=draft, data={"key": key, "name": key})
    return publish_draft(draft=draft).version


def _train(project: Project, config: SimulationConfig, *, trigger: str) -> ModelVersion:
    run = start_training_run(
        project=project, route=config.route, params=dict(config.params), trigger=trigger, dispatch=False
    )
    execute_training_run(run.pk)
    run.refresh_from_db()
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ServiceError(f"training run #{run.pk} failed: {run.error}")
    return run.model_version


def _run_batch(
    project: Project, reviewer: Any, config: SimulationConfig, number: int, chunk: Labelled, rng: random.Random
) -> dict[str, Any]:
    held = alias_map(project)
    rule = alias_services.release_rule_for(project)
    started = timezone.now()
    answers = _predict(project, config, chunk, rng)
    chosen = sorted(rng.sample(range(len(answers)), max(1, round(config.feedback_rate * len(answers)))))
    _feedback_and_review(project, reviewer, [(answers[i]["request_id"], chunk.labels[i]) for i in chosen])
    evaluate_release(project=project)
    drift = _drift(project, started)
    _retrain_unless_testing(project, config)
    predicted = [answer["label"] for answer in answers]
    return {
        "batch": number,
        "champion": _number(held[Alias.CHAMPION]),
        "challenger": _number(held[Alias.CHALLENGER]),
        "challenger_share": rule.challenger_share if held[Alias.CHALLENGER] else 0.0,
        "accuracy": _accuracy(predicted, chunk.labels),
        "macro_f1": round(
            float(
                f1_score(
                    chunk.labels,
                    predicted,
                    labels=sorted(set(chunk.labels) | set(predicted)),
                    average="macro",
                    zero_division=0,
                )
            ),
            6,
        ),
        "abstain_rate": round(sum(a["abstained"] for a in answers) / len(answers), 6),
        "estimated_accuracy": round(sum(a["confidence"] for a in answers) / len(answers), 6),
        "realised_accuracy": _accuracy([predicted[i] for i in chosen], [chunk.labels[i] for i in chosen]),
        "drift_score": drift["score"],
        "drift_alert": drift["alert"],
    }


def _predict(project: Project, config: SimulationConfig, chunk: Labelled, rng: random.Random) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = []
    for start in range(0, len(chunk.texts), config.request_size):
        session = f"user-{rng.randrange(config.sessions)}"
        request = PredictRequest(
            texts=chunk.texts[start : start + config.request_size], single=False, session_id=session
        )
        answers.extend(predict_for_project(project=project, request=request)["results"])
    return answers


def _feedback_and_review(project: Project, reviewer: Any, corrections: list[tuple[str, str]]) -> None:
    items = [{"request_id": request_id, "correct_label": label} for request_id, label in corrections]
    for result in submit_feedback(project=project, items=items):
        if result.review_task_id is None:
            continue
        try:
            resolve_review_task(project=project, task_id=result.review_task_id, resolved_by=reviewer, action="confirm")
        except ServiceError:
            continue  # the task was resolved already (the same text corrected twice in one batch)


def _drift(project: Project, started: Any) -> dict[str, Any]:
    end = timezone.now() + timedelta(milliseconds=1)
    check = request_drift_check(project=project, now=end, hours=(end - started).total_seconds() / 3600)
    if check is None:
        return {"score": None, "alert": False}
    check.refresh_from_db()
    novelty = (check.detail.get("features") or {}).get("novelty") or {}
    return {"score": novelty.get("share"), "alert": bool(check.feature_alert or check.label_alert)}


def _retrain_unless_testing(project: Project, config: SimulationConfig) -> None:
    """One experiment at a time: a new version is trained only when no challenger or shadow is under test."""
    held = alias_map(project)
    if held[Alias.CHALLENGER] is not None or held[Alias.SHADOW] is not None:
        return
    assign_splits(project=project)  # the feedback gold labels get their (fixed) split, as the retrain trigger does
    _train(project, config, trigger="auto_retrain")


def _accuracy(predicted: list[str], truth: list[str]) -> float | None:
    if not truth:
        return None
    return round(sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth), 6)


def _number(version: ModelVersion | None) -> int | None:
    return version.number if version is not None else None


def _line(row: dict[str, Any]) -> str:
    return (
        f"batch {row['batch']}: champion v{row['champion']} challenger {row['challenger']} "
        f"({row['challenger_share']:.0%}) accuracy {row['accuracy']:.3f} estimated {row['estimated_accuracy']:.3f} "
        f"realised {row['realised_accuracy']} drift {row['drift_score']} alert {row['drift_alert']}"
    )


def _settings(config: SimulationConfig, files: dict[str, Labelled]) -> dict[str, Any]:
    return {
        "train": len(files["train"].texts),
        "val": len(files["val"].texts),
        "stream": len(files["stream"].texts),
        "feedback_rate": config.feedback_rate,
        "batch": config.batch,
        "route": config.route,
        "params": config.params,
        "request_size": config.request_size,
        "min_labelled": config.min_labelled,
        "retrain_alias": config.retrain_alias,
        "seed": config.seed,
    }


def _delete(project: Project, reviewer: Any) -> None:
    folders = [
        Path(path) for path in ModelVersion.objects.filter(project=project).values_list("artifacts_dir", flat=True)
    ]
    project.delete()
    reviewer.delete()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
