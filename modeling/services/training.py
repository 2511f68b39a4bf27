"""Training runs of route 1: start, execute (the body of the Celery task), cancel, and sweep dead runs.

A run goes queued → running → succeeded | failed | cancelled. Artifacts are written to a temporary folder
and renamed into place by the engine, and the ModelVersion row is created only after the files verify: a
worker killed at any point leaves a failed run and no version."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
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
from modeling.models import ModelVersion, Route, TrainingRun
from modeling.services import features as feature_services
from sceneclf_site.api_errors import BrokerUnavailable, ConflictError, ServiceError
from sceneclf_site.queueing import send_task

logger = logging.getLogger(__name__)

ROUTE1_ROUTES = (Route.PROBE, Route.TFIDF)
MIN_TRAIN_PER_CLASS = 1
HEARTBEAT_EVERY_S = 1.0  # progress/heartbeat DB writes are throttled to this interval
CANCEL_CHECK_EVERY_S = 0.5
SERVING_FILE = "serving.json"
EXPLAIN_SUBDIR = "explain"


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

    def stage(self, name: str, start: float, end: float) -> None:
        self.span = (start, end)
        self.log(f"stage: {name}")
        TrainingRun.objects.filter(pk=self.run_id).update(stage=name, progress=start, heartbeat_at=timezone.now())
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
    route: str = Route.PROBE,
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

    if route not in ROUTE1_ROUTES:
        raise ServiceError(
            gettext("Route '%(route)s' is not trained here; use one of: %(value)s.")
            % {"route": route, "value": ", ".join(ROUTE1_ROUTES)}
        )
    if params is not None and not isinstance(params, dict):
        raise ServiceError(gettext("Training params must be an object."))
    params = dict(params or {})
    sweep_stale_runs(project=project)  # a run whose worker died no longer blocks a new one
    _refuse_if_active(project)
    collect_training_data(project)
    train_config_for(route, params, project)
    if route == Route.PROBE:
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
        route=Route.PROBE,
        params={"backbone": backbone} if backbone else {},
        trigger="extract",
        created_by=_real_user(user),
    )


ACTIVE_RUN_MESSAGE = "A run is already queued or running for this project; wait for it or cancel it."


def _refuse_if_active(project: Project) -> None:
    busy = [TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    if TrainingRun.objects.filter(project=project, status__in=busy).exists():
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
    if run.status in {TrainingRun.Status.WAITING, TrainingRun.Status.QUEUED}:
        # Not started: finish it now; the task sees a finished run on start and does nothing.
        TrainingRun.objects.filter(pk=run.pk, status=run.status).update(
            status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now(), stage="cancelled"
        )
    else:
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def sweep_stale_runs(*, project: Project | None = None, stale_after: int | None = None) -> int:
    """Fails running runs whose heartbeat stopped (killed or crashed worker). Returns how many."""
    limit = timezone.now() - timedelta(seconds=stale_after if stale_after is not None else stale_after_seconds())
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=limit)
    if project is not None:
        stale = stale.filter(project=project)
    failed = 0
    for run in stale:
        failed += TrainingRun.objects.filter(
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
    return failed


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
            _fail_redelivered(run)
            return None
        # A waiting run is claimed too: its task reached the broker just before the run was marked queued.
        if run.status not in {TrainingRun.Status.WAITING, TrainingRun.Status.QUEUED}:
            logger.info("training run %s is already %s; task ignored", run_id, run.status)
            return None
        now = timezone.now()
        run.status = TrainingRun.Status.RUNNING
        run.started_at = now
        run.heartbeat_at = now
        run.stage = "starting"
        run.save(update_fields=["status", "started_at", "heartbeat_at", "stage"])
        return run


def _fail_redelivered(run: TrainingRun) -> None:
    """A task for a run that is already running: a duplicate send while its worker is alive (ignored), or a
    redelivery (acks-late) after the worker that ran it was lost (the run is failed)."""
    fresh_since = timezone.now() - timedelta(seconds=stale_after_seconds())
    if run.heartbeat_at is not None and run.heartbeat_at >= fresh_since:
        logger.info("training run %s is running with a live heartbeat; duplicate task ignored", run.pk)
        return
    run.status = TrainingRun.Status.FAILED
    run.finished_at = timezone.now()
    run.error = "The worker running this run was lost mid-run (task redelivered). Nothing was published."
    run.save(update_fields=["status", "finished_at", "error"])


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
        return None
    timings["total_seconds"] = round(time.perf_counter() - started, 3)
    _finish(run.id, TrainingRun.Status.SUCCEEDED, timings=timings)
    return result


def _is_cancel(exc: BaseException) -> bool:
    if isinstance(exc, RunCancelled):
        return True
    try:
        from modeling.engine.routes.heads import Cancelled
    except ImportError:
        return False
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
        spec = feature_services.resolve_backbone_spec(run.params.get("backbone"))
        texts = list(Item.objects.filter(project_id=run.project_id).order_by("id").values_list("text", flat=True))
        extractor, _ = _extractor_for(spec, run.params)
        # The same max_len a training run would pick now, so the warmed cache is the one training reads.
        feature_services.fit_max_len(extractor, _train_texts_or_none(run.project), run.params.get("max_len"))
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


def _extractor_for(spec: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    config = feature_services.feature_config(spec, params)
    return feature_services.build_extractor(spec, config), config


def _train(run: TrainingRun, reporter: RunReporter, timings: dict[str, float]) -> int:
    from modeling.engine.artifacts import verify_artifacts
    from modeling.engine.pipeline import Predictor, evaluate, train_and_calibrate
    from modeling.engine.routes.heads import HeadInputs

    project = run.project
    reporter.stage("loading data", 0.0, 0.02)
    data = collect_training_data(project)
    reporter.log(
        f"taxonomy v{data.taxonomy.number}; {len(data.label_keys)} classes; train {len(data.train)}, "
        f"val {len(data.val)}, test {len(data.test)}; skipped {data.skipped}"
    )
    splits = ("train", "val", "test")
    matrices: dict[str, np.ndarray | None] = dict.fromkeys(splits)
    serving: dict[str, Any] = {"route": run.route, "label_keys": data.label_keys, "fallback_key": data.fallback_key}
    if run.route == Route.PROBE:
        reporter.stage("loading backbone", 0.02, 0.05)
        spec = feature_services.resolve_backbone_spec(run.params.get("backbone"))
        extractor, config = _extractor_for(spec, run.params)
        max_len = feature_services.fit_max_len(extractor, data.texts("train"), run.params.get("max_len"))
        reporter.log(f"max_len {max_len} (P95 of the training lengths, rounded up to 16, capped)")
        reporter.stage("extracting features", 0.05, 0.6)
        all_texts = [t for split in splits for t in data.texts(split)]
        t0 = time.perf_counter()
        matrix, n_extracted = feature_services.extract_with_cache(extractor, all_texts, reporter.progress)
        seconds = time.perf_counter() - t0
        timings.update(extract_seconds=round(seconds, 3), n_texts=len(all_texts), n_extracted=n_extracted)
        if n_extracted:
            timings["extract_texts_per_s"] = round(n_extracted / max(seconds, 1e-9), 1)
        reporter.log(f"features: {len(all_texts)} texts, {n_extracted} extracted, rest from cache")
        offset = 0
        for split in splits:
            n = len(getattr(data, split))
            matrices[split] = matrix[offset : offset + n]
            offset += n
        serving.update(
            backbone_ref=run.params.get("backbone") or settings.DEFAULT_BACKBONE,
            backbone_name=spec.name,
            backbone_fingerprint=spec.fingerprint,
            # What the extractor resolved (dtype "auto" -> bf16/fp32, max_len), so serving computes the same features.
            feature_config={**asdict(config), "dtype": extractor.dtype, "max_len": extractor.max_len},
            feature_dim=int(matrix.shape[1]),
        )

    reporter.stage("training head", 0.6, 0.9)
    inputs = {split: HeadInputs(matrices[split], data.texts(split)) for split in splits}
    t0 = time.perf_counter()
    result = train_and_calibrate(
        inputs["train"],
        data.y("train"),
        inputs["val"],
        data.y("val"),
        data.label_keys,
        data.fallback_key,
        train_config_for(run.route, run.params, project),
        progress=reporter.progress,
        should_stop=reporter.should_stop,
    )
    timings["fit_seconds"] = round(time.perf_counter() - t0, 3)

    reporter.stage("writing artifacts", 0.9, 0.95)
    final_dir = artifacts_dir_for(run)
    snapshot = [[e.item_id, e.label_key] for e in data.train + data.val]

    def write_extra(tmp: Path) -> None:
        _write_json(tmp / SERVING_FILE, serving)
        _write_json(tmp / "snapshot.json", {"train_val": snapshot})
        _write_explain(tmp / EXPLAIN_SUBDIR, matrices["train"], data.train)

    manifest = result.save(final_dir, extra=write_extra)
    verify_artifacts(final_dir, manifest)
    reporter.check_cancel()

    reporter.stage("evaluating on test", 0.95, 0.99)
    predictor = Predictor.load(final_dir, verify=True, expected_manifest=manifest)
    metrics: dict[str, Any] = _jsonable(result.metrics)
    if data.test:
        metrics["test"] = _jsonable(evaluate(predictor, inputs["test"], data.keys("test")))
    metrics["counts"] = {"train": len(data.train), "val": len(data.val), "test": len(data.test), **data.skipped}
    metrics["val_set"] = val_set_fingerprint([e.item_id for e in data.val])
    metrics["timings"] = dict(timings)
    version = _create_version(run, data, serving, final_dir, manifest, metrics, result, snapshot)
    reporter.log(f"created model version v{version.number}")
    if run.params.get("auto_publish"):
        _auto_publish(version, data, reporter)
    return version.id


def _auto_publish(version: ModelVersion, data: TrainingData, reporter: RunReporter) -> None:
    from modeling.services.publish_gate import auto_publish

    reporter.stage("comparing with the published version", 0.99, 1.0)
    if auto_publish(candidate=version, texts=data.texts("val"), label_keys=data.keys("val")):
        reporter.log(f"auto-published v{version.number}: {version.gate['reason']}")
    else:
        reporter.log(f"v{version.number} stays a candidate: {version.gate['reason']}")


# Route 1's default head: see docs for the measurement that picked it.
DEFAULT_PROBE_PARAMS: dict[str, Any] = {"head_kind": "linear", "hybrid": True}


def train_config_for(route: str, params: dict[str, Any], project: Project) -> Any:
    from modeling.engine.pipeline import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {
        "abstain_target_kind": project.abstain_target_kind,
        "abstain_target": project.abstain_target,
    }
    if route == Route.TFIDF:
        values["head_kind"] = "tfidf"
    else:
        values.update(DEFAULT_PROBE_PARAMS)
    values.update({k: v for k, v in params.items() if k in known})
    if route == Route.TFIDF:
        values.update(head_kind="tfidf", hybrid=False)
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ServiceError(
            gettext("Invalid training parameters: %(exc)s") % {"exc": exc}, code="invalid_params"
        ) from exc


def _create_version(
    run: TrainingRun,
    data: TrainingData,
    serving: dict[str, Any],
    final_dir: Path,
    manifest: Any,
    metrics: dict[str, Any],
    result: Any,
    snapshot: list[list[Any]],
) -> ModelVersion:
    calibration = _calibration(result)
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
            backbone_name=serving.get("backbone_name", ""),
            backbone_fingerprint=serving.get("backbone_fingerprint", ""),
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


def _calibration(result: Any) -> dict[str, Any]:
    return _jsonable(result.calibration_record())


def _write_explain(folder: Path, matrix: np.ndarray | None, examples: list[GoldExample]) -> None:
    """Normalised training features + who they are, for nearest-example explanations at predict time."""
    if matrix is None or not len(examples):
        return
    folder.mkdir(parents=True, exist_ok=True)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.save(folder / "features.npy", (matrix / np.maximum(norms, 1e-12)).astype(np.float32))
    _write_json(
        folder / "examples.json",
        [{"item_id": e.item_id, "text": e.text, "label": e.label_key} for e in examples],
    )


def _write_json(path: Path, payload: Any) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), ensure_ascii=False, indent=1), encoding="utf-8")


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and dataclasses → plain JSON types."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
