"""Training runs of any registered route: start, execute (the body of the Celery task), cancel, sweep dead runs.

A run goes queued → running → succeeded | failed | cancelled. Artifacts are written to a temporary folder
and renamed into place by the engine, and the ModelVersion row is created only after the files verify: a
worker killed at any point leaves no version. A route that checkpoints (`lora`, `prefix`, `encoder_ft`) writes
into the run's checkpoint folder; a run whose worker died after a checkpoint is queued again and resumes from it
(the stale-heartbeat sweep, or the redelivered task), every other dead run is failed."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import Item, Project, TaxonomyVersion
from labeling.selectors.training_data import (
    GoldExample,
    gold_examples,
    latest_published_taxonomy,
    taxonomy_label_keys,
)
from modeling.models import ACTIVE_RUN_STATUSES, ModelVersion, TrainingRun
from modeling.services import features as feature_services
from modeling.services import incremental
from sceneclf_site.api_errors import BrokerUnavailable, ConflictError, ServiceError
from sceneclf_site.queueing import send_task

logger = logging.getLogger(__name__)

MIN_TRAIN_PER_CLASS = 1
HEARTBEAT_EVERY_S = 1.0  # progress/heartbeat DB writes are throttled to this interval
CANCEL_CHECK_EVERY_S = 0.5
# Run params that belong to the run, not to the route or the calibration.
AUTO_RETRAIN = "auto_retrain"
RUN_PARAM_NAMES = ("auto_publish", "budget_minutes", "incremental_from", "replay_share")
# Overall progress span of each engine stage; a stage a route adds keeps the current span.
STAGE_SPANS = {"prepare": (0.02, 0.05), "extract": (0.05, 0.6), "fit": (0.6, 0.9), "calibrate": (0.9, 0.95)}
STAGE_NAMES = {"extract": "extracting features", "fit": "training", "calibrate": "calibrating"}


class RunCancelled(Exception):
    """Raised inside a run when its owner asked to cancel it."""


def stale_after_seconds() -> int:
    return int(settings.TRAINING_STALE_AFTER_SECONDS)


def val_set_fingerprint(item_ids: list[int]) -> dict[str, Any]:
    """Names a validation set: two versions' metrics compare only when these are equal."""
    joined = ",".join(str(i) for i in sorted(item_ids))
    return {"sha256": hashlib.sha256(joined.encode("ascii")).hexdigest(), "count": len(item_ids)}


# --- Data ---------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    taxonomy: TaxonomyVersion
    label_keys: list[str]  # the head's classes: taxonomy labels seen in the train split, in taxonomy order
    fallback_key: str
    train: list[GoldExample]
    val: list[GoldExample]
    test: list[GoldExample]
    skipped: dict[str, int]

    def texts(self, split: str) -> list[str]:
        return [e.text for e in getattr(self, split)]

    def y(self, split: str) -> np.ndarray:
        index = {key: i for i, key in enumerate(self.label_keys)}
        return np.array([index[e.label_key] for e in getattr(self, split)], dtype=np.int64)

    def keys(self, split: str) -> list[str]:
        return [e.label_key for e in getattr(self, split)]


def collect_training_data(project: Project) -> TrainingData:
    """Gold labels of the latest published taxonomy, by split; a clear error when training cannot start."""
    taxonomy = latest_published_taxonomy(project)
    if taxonomy is None:
        raise ServiceError(gettext("Publish a taxonomy before training: gold labels refer to a published version."))
    taxonomy_keys, fallback_key = taxonomy_label_keys(taxonomy)
    if fallback_key is None:
        raise ServiceError(gettext("Taxonomy v%(number)s has no fallback label.") % {"number": taxonomy.number})
    examples = gold_examples(project, label_keys=taxonomy_keys)
    by_split: dict[str, list[GoldExample]] = {"train": [], "val": [], "test": [], "": []}
    for example in examples:
        by_split.setdefault(example.split, []).append(example)
    train_keys = {e.label_key for e in by_split["train"]}
    # The fallback is always a class: abstained texts are answered with it, even if few were labelled so.
    label_keys = [key for key in taxonomy_keys if key in train_keys or key == fallback_key]
    if len(train_keys) < 2:
        raise ServiceError(
            gettext(
                "Training needs gold labels of at least 2 labels in the train split; found %(n_train_keys)s "
                "(%(value)s train items). Label more items or run the split on the items page."
            )
            % {"n_train_keys": len(train_keys), "value": len(by_split["train"])},
            code="not_enough_data",
        )
    if not by_split["val"]:
        raise ServiceError(
            gettext(
                "No gold-labelled items in the validation split: calibration and the abstention threshold are tuned "
                "on it. Run the split on the items page first."
            ),
            code="not_enough_data",
        )
    # A class absent from train cannot be predicted; its val/test items would only distort calibration.
    val = [e for e in by_split["val"] if e.label_key in label_keys]
    test = [e for e in by_split["test"] if e.label_key in label_keys]
    skipped = {
        "unassigned_split": len(by_split[""]),
        "val_label_not_in_train": len(by_split["val"]) - len(val),
        "test_label_not_in_train": len(by_split["test"]) - len(test),
    }
    return TrainingData(taxonomy, label_keys, fallback_key, by_split["train"], val, test, skipped)


# --- Progress, heartbeat, cancel ----------------------------------------------------------------


class RunReporter:
    """Writes stage/progress/heartbeat of one run (throttled) and answers "should I stop?"."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.span = (0.0, 1.0)
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._stage_name = ""

    def stage(self, name: str, start: float, end: float) -> None:
        self.span = (start, end)
        self.log(f"stage: {name}")
        TrainingRun.objects.filter(pk=self.run_id).update(
            stage=name, progress=start, eta_seconds=None, heartbeat_at=timezone.now()
        )
        self._last_write = time.monotonic()
        self.check_cancel()

    def log(self, message: str) -> None:
        append_log(self.run_id, message)

    def progress(self, *args: Any, **kwargs: Any) -> None:
        """Accepts progress(fraction), progress(done, total) or keyword forms; raises RunCancelled."""
        fraction = _fraction(args, kwargs)
        now = time.monotonic()
        if fraction is not None and now - self._last_write >= HEARTBEAT_EVERY_S:
            start, end = self.span
            value = start + (end - start) * min(max(fraction, 0.0), 1.0)
            TrainingRun.objects.filter(pk=self.run_id).update(progress=value, heartbeat_at=timezone.now())
            self._last_write = now
        self.check_cancel()

    def event(self, event: Any) -> None:
        """An engine ProgressEvent (stage, fraction, ETA): the run's stage, overall progress and ETA."""
        name = STAGE_NAMES.get(event.stage, event.stage)
        if name != self._stage_name:
            self._stage_name = name
            start, end = STAGE_SPANS.get(event.stage, self.span)
            self.stage(name, start, end)
        now = time.monotonic()
        if now - self._last_write >= HEARTBEAT_EVERY_S or event.fraction >= 1.0:
            start, end = self.span
            value = start + (end - start) * min(max(event.fraction, 0.0), 1.0)
            eta = None if event.eta_seconds is None else round(float(event.eta_seconds), 1)
            TrainingRun.objects.filter(pk=self.run_id).update(
                progress=value, eta_seconds=eta, heartbeat_at=timezone.now()
            )
            self._last_write = now
        self.check_cancel()

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= CANCEL_CHECK_EVERY_S:
            self._last_cancel_check = now
            self._cancelled = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self._cancelled

    def check_cancel(self) -> None:
        if self.should_stop():
            raise RunCancelled()


def append_log(run_id: int, message: str) -> None:
    """One UPDATE ... SET log = log || line: concurrent writers never overwrite each other's lines."""
    line = f"[{timezone.now():%H:%M:%S}] {message}\n"
    TrainingRun.objects.filter(pk=run_id).update(log=Concat(F("log"), Value(line)))


class Heartbeat:
    """Writes the run's heartbeat from a thread of the worker while the run's body works, even through long
    steps without progress callbacks. The thread dies with the worker, so a stale heartbeat means a lost worker."""

    def __init__(self, run_id: int, every: float | None = None) -> None:
        self.run_id = run_id
        self.every = float(settings.TRAINING_HEARTBEAT_SECONDS if every is None else every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    TrainingRun.objects.filter(pk=self.run_id, status=TrainingRun.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:  # a database blip: the next beat tries again
                    logger.warning("heartbeat of training run %s not written", self.run_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


def _fraction(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
    numbers = [a for a in args if isinstance(a, int | float)]
    done = kwargs.get("done", numbers[0] if numbers else None)
    total = kwargs.get("total", numbers[1] if len(numbers) > 1 else None)
    if done is None:
        return None
    if total:
        return float(done) / float(total)
    return float(done) if done <= 1 else None


# --- Start / cancel / sweep ---------------------------------------------------------------------


def start_training_run(
    *,
    project: Project,
    user: Any | None = None,
    route: str = "probe",
    params: dict[str, Any] | None = None,
    auto_publish: bool = False,
    trigger: str = "manual",
    dispatch: bool = True,
) -> TrainingRun:
    """Validates the data now (so the owner sees a clear error at once), then queues `train_model` once the
    run is committed. Raises BrokerUnavailable (503) when the broker is down: the run is then kept as
    "waiting for the queue" and sent by the requeue sweep, and a new start replaces it.

    With dispatch=False the run stays queued for the caller to execute in-process (`execute_training_run`)."""
    from modeling.tasks import train_model

    if params is not None and not isinstance(params, dict):
        raise ServiceError(gettext("Training params must be an object."), code="invalid_params")
    params = dict(params or {})
    checked = run_params_for(route, params, project)  # a misspelt or out-of-range key: a 400 naming it, first
    sweep_stale_runs(project=project)  # a run whose worker died no longer blocks a new one
    _refuse_if_active(project)
    collect_training_data(project)
    if checked.incremental_from is not None:
        incremental.previous_version(project, checked.incremental_from, route)
    if "backbone" in type(checked.route).model_fields:
        feature_services.resolve_backbone_spec(params.get("backbone"))
    params["auto_publish"] = bool(auto_publish)
    fields = {"route": route, "params": params, "trigger": trigger, "created_by": _real_user(user)}
    if not dispatch:
        return _create_run(project, status=TrainingRun.Status.QUEUED, **fields)
    return _create_and_send(project, train_model, **fields)


def start_feature_extraction(*, project: Project, user: Any | None = None, backbone: str | None = None) -> TrainingRun:
    """Warms the feature cache for every item of the project (a run with trigger "extract")."""
    from modeling.tasks import extract_features

    sweep_stale_runs(project=project)
    _refuse_if_active(project)
    feature_services.resolve_backbone_spec(backbone)
    return _create_and_send(
        project,
        extract_features,
        route="probe",
        params={"backbone": backbone} if backbone else {},
        trigger="extract",
        created_by=_real_user(user),
    )


ACTIVE_RUN_MESSAGE = "A run is already queued or running for this project; wait for it or cancel it."


def _refuse_if_active(project: Project) -> None:
    busy = [TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    if TrainingRun.objects.filter(project=project, status__in=busy).exists():
        raise ConflictError(ACTIVE_RUN_MESSAGE)
    # A run waiting to resume from its checkpoint is not replaced by a new start (only cancelled by its owner).
    waiting = TrainingRun.objects.filter(project=project, status=TrainingRun.Status.WAITING)
    if any(has_checkpoint(run) for run in waiting):
        raise ConflictError(ACTIVE_RUN_MESSAGE)


def _create_run(project: Project, *, status: str, **fields: Any) -> TrainingRun:
    """Inserts the run; the partial unique index turns a lost race with another start into a 409."""
    try:
        with transaction.atomic():
            return TrainingRun.objects.create(project=project, status=status, task_id=str(uuid.uuid4()), **fields)
    except IntegrityError as exc:
        raise ConflictError(ACTIVE_RUN_MESSAGE) from exc


def _create_and_send(project: Project, task: Any, **fields: Any) -> TrainingRun:
    with transaction.atomic():
        # A run still waiting for the queue (the broker was down) is replaced by this newer start.
        superseded = TrainingRun.objects.filter(project=project, status=TrainingRun.Status.WAITING).update(
            status=TrainingRun.Status.CANCELLED,
            finished_at=timezone.now(),
            stage="cancelled",
            error="Replaced by a newer start while it waited for the queue.",
        )
        if superseded:
            logger.info("project %s: %d waiting run(s) replaced by a new start", project.slug, superseded)
        run = _create_run(project, status=TrainingRun.Status.WAITING, stage="waiting for the queue", **fields)
        transaction.on_commit(lambda: _send_run(run.pk, task, run.task_id))
    return _sent_or_503(run)


def _send_run(run_id: int, task: Any, task_id: str) -> bool:
    """Publishes the run's task; the run becomes queued, or stays waiting when the broker is down."""
    try:
        send_task(task, args=[run_id], task_id=task_id)
    except BrokerUnavailable:
        return False
    # Only a still-waiting run: a worker (or an eager task) may already have claimed or finished it.
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.WAITING).update(
        status=TrainingRun.Status.QUEUED, stage=""
    )
    return True


def _sent_or_503(run: TrainingRun) -> TrainingRun:
    if connection.in_atomic_block:
        return run  # the caller's transaction has not committed: the run is sent when it does
    run.refresh_from_db()
    if run.status == TrainingRun.Status.WAITING:
        raise BrokerUnavailable(
            gettext(
                "The task queue (broker) is not reachable. Nothing was lost: run #%(pk)s is kept waiting for the "
                "queue and is sent by itself when the broker is back (see GET /api/v1/health); starting a new run "
                "replaces it."
            )
            % {"pk": run.pk},
            details={"run_id": run.pk, "status": run.status},
        )
    return run


def requeue_waiting_runs(*, older_than_seconds: float = 5.0) -> list[int]:
    """Sends again the runs whose task never reached the broker. Stops at the first failed send (the broker
    is still down). Returns the ids sent."""
    from modeling.tasks import extract_features, train_model

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    waiting = TrainingRun.objects.filter(status=TrainingRun.Status.WAITING, created_at__lt=cutoff).order_by("id")
    sent = []
    for run_id, trigger, task_id in waiting.values_list("id", "trigger", "task_id"):
        task = extract_features if trigger == "extract" else train_model
        if not _send_run(run_id, task, task_id):
            break
        sent.append(run_id)
    return sent


def _real_user(user: Any | None) -> Any | None:
    return user if getattr(user, "pk", None) is not None and getattr(user, "is_authenticated", False) else None


def cancel_training_run(*, run: TrainingRun) -> TrainingRun:
    if not run.is_active:
        raise ConflictError(
            gettext("Run #%(id)s is already %(status)s; nothing to cancel.") % {"id": run.id, "status": run.status}
        )
    # Not started: finish it now; the task sees a finished run on start and does nothing. The status is the
    # database's, not the caller's copy: a worker may have claimed the run since it was read.
    not_started = TrainingRun.objects.filter(
        pk=run.pk, status__in=[TrainingRun.Status.WAITING, TrainingRun.Status.QUEUED]
    ).update(status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now(), stage="cancelled")
    if not_started:
        _remove_checkpoint(run)  # a run waiting to resume keeps one
    else:
        TrainingRun.objects.filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def sweep_stale_runs(*, project: Project | None = None, stale_after: int | None = None) -> int:
    """Running runs whose heartbeat stopped (killed or crashed worker): one with a checkpoint is queued again
    to resume from it, the others are failed. Returns how many were failed or queued again."""
    limit = timezone.now() - timedelta(seconds=stale_after if stale_after is not None else stale_after_seconds())
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=limit)
    if project is not None:
        stale = stale.filter(project=project)
    handled = 0
    for run in stale:
        if has_checkpoint(run):
            handled += _queue_resume(run, limit)
            continue
        handled += TrainingRun.objects.filter(
            pk=run.pk, status=TrainingRun.Status.RUNNING, heartbeat_at__lt=limit
        ).update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=(
                f"No heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC: the worker stopped (killed or "
                "crashed) mid-run. Nothing was published; start a new run."
            ),
        )
        _remove_partial_artifacts(run)
        _remove_checkpoint(run)
    return handled


def _queue_resume(run: TrainingRun, limit: Any) -> int:
    """The run waits for the queue again and its task is re-sent (a new task id: the lost worker's message, if
    the broker ever redelivers it, then finds the run claimed or finished and does nothing)."""
    from modeling.tasks import train_model

    with transaction.atomic():
        task_id = str(uuid.uuid4())
        moved = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING, heartbeat_at__lt=limit).update(
            status=TrainingRun.Status.WAITING, stage="waiting to resume from its checkpoint", task_id=task_id
        )
        if moved:
            _remove_partial_artifacts(run)  # the resumed run writes its version folder anew
            append_log(run.pk, "worker lost (no heartbeat); queued again to resume from its checkpoint")
            transaction.on_commit(lambda: _send_run(run.pk, train_model, task_id))
    return moved


def checkpoint_dir_for(run: TrainingRun) -> Path:
    """Where a long route saves its training state; kept while the run may resume, removed once it ends."""
    return Path(settings.ARTIFACT_ROOT) / "runs" / f"run-{run.id}-{run.created_at:%Y%m%d%H%M%S%f}" / "checkpoint"


def has_checkpoint(run: TrainingRun) -> bool:
    from modeling.engine.routes.base import holds_checkpoint

    return holds_checkpoint(checkpoint_dir_for(run))


def _remove_checkpoint(run: TrainingRun) -> None:
    shutil.rmtree(checkpoint_dir_for(run).parent, ignore_errors=True)


def _remove_partial_artifacts(run: TrainingRun) -> None:
    """Temporary folders a dead run left behind. A final folder without a ModelVersion is removed too."""
    final = artifacts_dir_for(run)
    if not final.parent.exists():
        return
    leftovers = [*final.parent.glob(f"{final.name}*"), *final.parent.glob(f".{final.name}.tmp-*")]
    for path in leftovers:
        if path.is_dir() and not ModelVersion.objects.filter(artifacts_dir=str(path)).exists():
            shutil.rmtree(path, ignore_errors=True)


def artifacts_dir_for(run: TrainingRun) -> Path:
    # The creation time keeps the name unique even if a wiped database hands out the same ids again.
    return Path(settings.ARTIFACT_ROOT) / f"project-{run.project_id}" / f"run-{run.id}-{run.created_at:%Y%m%d%H%M%S%f}"


# --- Execution (called by the Celery tasks) -----------------------------------------------------


def _claim(run_id: int) -> TrainingRun | None:
    """Marks the run running, unless it is finished or was already started by a worker that died."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            logger.warning("training run %s does not exist; task ignored", run_id)
            return None
        if run.status == TrainingRun.Status.RUNNING:
            return _resume_or_fail_redelivered(run)
        # A waiting run is claimed too: its task reached the broker just before the run was marked queued.
        if run.status not in {TrainingRun.Status.WAITING, TrainingRun.Status.QUEUED}:
            logger.info("training run %s is already %s; task ignored", run_id, run.status)
            return None
        now = timezone.now()
        run.status = TrainingRun.Status.RUNNING
        run.started_at = run.started_at or now  # a resumed run keeps its first start
        run.heartbeat_at = now
        run.stage = "starting"
        run.save(update_fields=["status", "started_at", "heartbeat_at", "stage"])
        return run


def _resume_or_fail_redelivered(run: TrainingRun) -> TrainingRun | None:
    """A task for a run that is already running: a duplicate send while its worker is alive (ignored), or a
    redelivery (acks-late) after the worker that ran it was lost: the run resumes from its checkpoint when it
    has one (returned, claimed by this worker), else it is failed."""
    fresh_since = timezone.now() - timedelta(seconds=stale_after_seconds())
    if run.heartbeat_at is not None and run.heartbeat_at >= fresh_since:
        logger.info("training run %s is running with a live heartbeat; duplicate task ignored", run.pk)
        return None
    if has_checkpoint(run):
        _remove_partial_artifacts(run)
        run.heartbeat_at = timezone.now()
        run.stage = "resuming"
        run.save(update_fields=["heartbeat_at", "stage"])
        append_log(run.pk, "task redelivered after the worker was lost; resuming from its checkpoint")
        return run
    run.status = TrainingRun.Status.FAILED
    run.finished_at = timezone.now()
    run.error = "The worker running this run was lost mid-run (task redelivered). Nothing was published."
    run.save(update_fields=["status", "finished_at", "error"])
    return None


def _finish(run_id: int, status: str, *, error: str = "", timings: dict[str, float] | None = None) -> None:
    updates: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error}
    if status == TrainingRun.Status.SUCCEEDED:
        updates.update(progress=1.0, stage="done")
    if timings is not None:
        updates["timings"] = timings
    # Only a running run is finished here: the sweeper may already have failed it.
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(**updates)


def _guarded(run_id: int, body: Callable[[TrainingRun, RunReporter, dict[str, float]], Any]) -> Any:
    run = _claim(run_id)
    if run is None:
        return None
    reporter = RunReporter(run.id)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        with Heartbeat(run.id):
            result = body(run, reporter, timings)
    except Exception as exc:
        timings["total_seconds"] = round(time.perf_counter() - started, 3)
        if _is_cancel(exc):
            reporter.log("cancelled by request")
            _finish(run.id, TrainingRun.Status.CANCELLED, timings=timings)
        else:
            message = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
            logger.exception("training run %s failed", run.id)
            _finish(run.id, TrainingRun.Status.FAILED, error=message, timings=timings)
        _remove_partial_artifacts(run)
        _remove_checkpoint(run)
        return None
    timings["total_seconds"] = round(time.perf_counter() - started, 3)
    _finish(run.id, TrainingRun.Status.SUCCEEDED, timings=timings)
    _remove_checkpoint(run)
    return result


def _is_cancel(exc: BaseException) -> bool:
    if isinstance(exc, RunCancelled):
        return True
    from modeling.engine.routes.base import Cancelled

    return isinstance(exc, Cancelled)


def _train_texts_or_none(project: Project) -> list[str]:
    try:
        return collect_training_data(project).texts("train")
    except ServiceError:  # not enough gold labels yet: the extractor keeps its cap
        return []


def execute_extraction_run(run_id: int) -> int | None:
    """Extracts (into the cache) the features of every item of the project. Returns how many were new."""

    def body(run: TrainingRun, reporter: RunReporter, timings: dict[str, float]) -> int:
        reporter.stage("loading backbone", 0.0, 0.05)
        texts = list(Item.objects.filter(project_id=run.project_id).order_by("id").values_list("text", flat=True))
        # The same max_len a training run would pick now, so the warmed cache is the one training reads.
        extractor = feature_services.training_extractor(run.params, _train_texts_or_none(run.project))
        reporter.stage("extracting features", 0.05, 1.0)
        t0 = time.perf_counter()
        _, n_extracted = feature_services.extract_with_cache(extractor, texts, reporter.progress)
        timings["extract_seconds"] = round(time.perf_counter() - t0, 3)
        reporter.log(f"{len(texts)} texts, {n_extracted} extracted, {len(texts) - n_extracted} from cache")
        TrainingRun.objects.filter(pk=run.id).update(
            params={**run.params, "n_texts": len(texts), "n_extracted": n_extracted}
        )
        return n_extracted

    return _guarded(run_id, body)


def execute_training_run(run_id: int) -> int | None:
    """Trains, calibrates, evaluates, writes artifacts and creates a candidate version. Returns its id."""
    return _guarded(run_id, _train)


def _train(run: TrainingRun, reporter: RunReporter, timings: dict[str, float]) -> int:
    from modeling.engine.routes.base import Examples
    from modeling.engine.versions import Predictor, train_version

    project = run.project
    reporter.stage("loading data", 0.0, 0.02)
    data = collect_training_data(project)
    reporter.log(
        f"route {run.route}; taxonomy v{data.taxonomy.number}; {len(data.label_keys)} classes; train "
        f"{len(data.train)}, val {len(data.val)}, test {len(data.test)}; skipped {data.skipped}"
    )
    params = run_params_for(run.route, run.params, project)
    increment = None
    if params.incremental_from is not None:
        increment = incremental.plan_increment(
            project=project, route=run.route, train=data.train, number=params.incremental_from,
            replay_share=params.replay_share, seed=run.pk,
        )  # fmt: skip
        reporter.log(increment.log_line())
    train = data.train if increment is None else increment.train
    t0 = time.perf_counter()
    version = train_version(
        run.route,
        params.route,
        Examples([e.text for e in train], [e.label_key for e in train]),
        Examples(data.texts("val"), data.keys("val")),
        fit_context(
            data,
            reporter,
            warm_start=None if increment is None else increment.warm_start,
            checkpoint_dir=checkpoint_dir_for(run),
        ),
        params.calibration,
        budget_minutes=params.budget_minutes,
        # Item texts are stored PII-masked; serving shows them as the nearest labelled examples.
        explain_rows=[{"item_id": e.item_id, "text": e.text, "label": e.label_key} for e in train],
    )
    timings["fit_seconds"] = round(time.perf_counter() - t0, 3)
    described = version.describe()
    for key in ("extract_seconds", "n_texts", "n_extracted", "extract_texts_per_s"):
        if key in described:
            timings[key] = described[key]
    reporter.log(f"trained in {timings['fit_seconds']} s; {described.get('n_extracted', 0)} texts extracted")
    fit_report = described.get("training") if isinstance(described.get("training"), dict) else None
    if fit_report and fit_report.get("resumed_from_step"):
        reporter.log(f"resumed from the checkpoint at step {fit_report['resumed_from_step']}")

    reporter.stage("writing artifacts", 0.95, 0.97)
    final_dir = artifacts_dir_for(run)
    manifest = version.save(final_dir)
    reporter.check_cancel()

    reporter.stage("evaluating on test", 0.97, 0.99)
    predictor = Predictor.load(final_dir, engine_load_context(cached=True), expected_manifest=manifest)
    metrics: dict[str, Any] = dict(version.metrics)
    if data.test:
        metrics["test"] = predictor.evaluate(Examples(data.texts("test"), data.keys("test")))
    metrics["counts"] = {"train": len(data.train), "val": len(data.val), "test": len(data.test), **data.skipped}
    metrics["val_set"] = val_set_fingerprint([e.item_id for e in data.val])
    metrics["timings"] = dict(timings)
    if fit_report:
        metrics["fit_report"] = fit_report  # steps, resumed_from_step, stopped_by, tokens/s of a stepwise route
    if increment is not None:
        metrics["incremental"] = increment.report
        metrics["forgetting"] = incremental.forgetting_metrics(
            previous=increment.previous, predictor=predictor, load_context=engine_load_context(cached=True)
        )
        reporter.log(f"forgetting on v{increment.previous.number}'s validation split: {metrics['forgetting']}")
    # All gold of the train and val splits, also after an incremental run: the next one's "new since" is
    # counted against everything this version was accountable for, not only what it replayed.
    snapshot = [[e.item_id, e.label_key] for e in data.train + data.val]
    model_version = _create_version(run, data, version, final_dir, manifest, _jsonable(metrics), snapshot)
    reporter.log(f"created model version v{model_version.number}")
    if run.trigger == AUTO_RETRAIN:
        _release_retrained(model_version, data, reporter)
    elif run.params.get("auto_publish"):
        _auto_publish(model_version, data, reporter)
    return model_version.id


def _release_retrained(version: ModelVersion, data: TrainingData, reporter: RunReporter) -> None:
    """A version of the automatic retrain never replaces the champion: it becomes the challenger or the shadow."""
    from modeling.services.aliases import release_retrained_version

    reporter.stage("comparing with the champion", 0.99, 1.0)
    reporter.log(release_retrained_version(version=version, texts=data.texts("val"), label_keys=data.keys("val")))


def _auto_publish(version: ModelVersion, data: TrainingData, reporter: RunReporter) -> None:
    from modeling.services.publish_gate import auto_publish

    reporter.stage("comparing with the published version", 0.99, 1.0)
    if auto_publish(candidate=version, texts=data.texts("val"), label_keys=data.keys("val")):
        reporter.log(f"auto-published v{version.number}: {version.gate['reason']}")
    else:
        reporter.log(f"v{version.number} stays a candidate: {version.gate['reason']}")


@dataclass(frozen=True)
class RunParams:
    route: Any  # the route's validated Params
    calibration: Any  # versions.CalibrationParams
    budget_minutes: float | None
    incremental_from: int | None = None  # the version an incremental run continues from
    replay_share: float = 0.0


def run_params_for(route: str, params: dict[str, Any], project: Project) -> RunParams:
    """A run's params split into the route's, the calibration's (the project's abstention target by default)
    and the run's own. An unknown route, or an unknown or invalid key, is a 400 that names it."""
    from modeling.engine.routes import parse_params
    from modeling.engine.routes.base import ParamsError
    from modeling.engine.versions import CalibrationParams, calibration_params

    calibration_keys = set(CalibrationParams.model_fields)
    calibration = {"abstain_target_kind": project.abstain_target_kind, "abstain_target": project.abstain_target}
    calibration.update({k: v for k, v in params.items() if k in calibration_keys})
    route_params = {k: v for k, v in params.items() if k not in calibration_keys and k not in RUN_PARAM_NAMES}
    budget = params.get("budget_minutes")
    try:
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0):
            raise ParamsError("parameter 'budget_minutes' must be a positive number of minutes", key="budget_minutes")
        return RunParams(
            parse_params(route, route_params),
            calibration_params(calibration),
            None if budget is None else float(budget),
            *_incremental_params(params),
        )
    except ParamsError as exc:
        raise ServiceError(
            gettext("Invalid training parameters: %(exc)s") % {"exc": exc},
            code="invalid_params",
            details={"key": exc.key} if exc.key else None,
        ) from exc


def _incremental_params(params: dict[str, Any]) -> tuple[int | None, float]:
    from modeling.engine.data.replay import DEFAULT_REPLAY_SHARE
    from modeling.engine.routes.base import ParamsError

    number, share = params.get("incremental_from"), params.get("replay_share")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
        raise ParamsError("parameter 'incremental_from' must be a version number", key="incremental_from")
    if share is not None and number is None:
        raise ParamsError("parameter 'replay_share' needs 'incremental_from'", key="replay_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1):
        raise ParamsError("parameter 'replay_share' must be a share between 0 and 1", key="replay_share")
    return number, DEFAULT_REPLAY_SHARE if share is None else float(share)


def engine_load_context(*, cached: bool, threads: int | None = None) -> Any:
    """Where the engine finds backbones (and, for scoring stored items, the feature cache) when it loads a
    version. Serving passes cached=False: request texts are not written to the cache."""
    from modeling.engine.routes.base import LoadContext
    from modeling.services.serving_cache import recent_features

    return LoadContext(
        model_root=Path(settings.MODEL_ROOT),
        cache_dir=Path(settings.FEATURE_CACHE_DIR) if cached else None,
        threads=int(settings.TORCH_THREADS if threads is None else threads),
        recent=None if cached else recent_features(),
    )


def fit_context(
    data: TrainingData, reporter: RunReporter, *, warm_start: Path | None = None, checkpoint_dir: Path | None = None
) -> Any:
    from modeling.engine.routes.base import FitContext

    return FitContext(
        checkpoint_dir=checkpoint_dir,
        label_keys=list(data.label_keys),
        taxonomy=engine_taxonomy(data.taxonomy, data.fallback_key),
        model_root=Path(settings.MODEL_ROOT),
        cache_dir=Path(settings.FEATURE_CACHE_DIR),
        progress=reporter.event,
        should_stop=reporter.should_stop,
        extras={"default_backbone": settings.DEFAULT_BACKBONE},
        threads=int(settings.TORCH_THREADS),
        warm_start=warm_start,
    )


def engine_taxonomy(taxonomy: TaxonomyVersion, fallback_key: str) -> Any:
    """The taxonomy as routes read it: each label's name, definition, rules, examples and edge cases."""
    from labeling.models import Label
    from modeling.engine.routes.base import LabelInfo, Taxonomy

    def lines(text: str) -> tuple[str, ...]:
        return tuple(line.strip() for line in (text or "").splitlines() if line.strip())

    labels = Label.objects.filter(taxonomy=taxonomy).order_by("order", "key")
    return Taxonomy(
        tuple(
            LabelInfo(
                key=label.key,
                name=label.name,
                definition=label.definition,
                rules=lines(label.decision_rules),
                examples=tuple(str(x) for x in label.examples or ()),
                edge_cases=tuple(str(x) for x in label.counter_examples or ()),
            )
            for label in labels
        ),
        fallback_key,
    )


def _create_version(
    run: TrainingRun,
    data: TrainingData,
    version: Any,
    final_dir: Path,
    manifest: Any,
    metrics: dict[str, Any],
    snapshot: list[list[Any]],
) -> ModelVersion:
    calibration = version.calibration_record()
    described = version.describe()
    with transaction.atomic():
        # Lock the project row so two runs finishing together never take the same number.
        Project.objects.select_for_update().filter(pk=run.project_id).first()
        status = TrainingRun.objects.select_for_update().filter(pk=run.pk).values_list("status", flat=True).first()
        if status != TrainingRun.Status.RUNNING:
            # The sweeper gave this run up (or it was cancelled): a finished run never gains a version.
            raise ServiceError(
                gettext("Run #%(pk)s is %(status)s and can no longer create a model version.")
                % {"pk": run.pk, "status": status}
            )
        number = (ModelVersion.objects.filter(project_id=run.project_id).aggregate(n=Max("number"))["n"] or 0) + 1
        return ModelVersion.objects.create(
            project_id=run.project_id,
            run=run,
            number=number,
            route=run.route,
            backbone_name=described.get("backbone_name", ""),
            backbone_fingerprint=described.get("backbone_fingerprint", ""),
            taxonomy=data.taxonomy,
            label_keys=data.label_keys,
            training_snapshot=snapshot,
            artifacts_dir=str(final_dir),
            manifest=_jsonable(manifest),
            metrics=metrics,
            temperature=float(calibration.get("temperature", 1.0)),
            threshold=float(calibration.get("threshold", 0.0) or 0.0),
            class_thresholds=calibration.get("class_thresholds") or {},
        )


def _jsonable(value: Any) -> Any:
    from modeling.engine.versions import jsonable

    return jsonable(value)
