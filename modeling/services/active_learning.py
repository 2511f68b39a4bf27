"""Active learning in the app: rank the unlabelled pool into the labeling queue, retrain after every N new gold
labels, and the offline simulation behind `manage.py simulate_active_learning`.

Scoring uses the calibrated probabilities of the newest model version on cached features, so a re-score after
a retrain extracts only items never seen before. Priorities reach labeling through its own service
(`labeling.services.workspace.set_priorities`); labeling never learns how they were computed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext

from labeling.models import Project
from modeling.engine.selection import active
from modeling.models import ActiveLearningRound, ActiveLearningSettings, ModelVersion
from modeling.selectors import active_learning as al_selectors
from modeling.services import features as feature_services
from modeling.services.label_quality import LabelledFile
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

STOP_SET_SIZE = 500
MAX_BATCH_SIZE = 1000
SUGGESTION_TOPK = 3
# The round's strategy when the zero-shot model chose the batch (no trained model yet).
ZERO_SHOT_STRATEGY = "zero_shot"


# --- settings ---------------------------------------------------------------------------------------


def update_al_settings(
    *, project: Project, strategy: str | None = None, batch_size: int | None = None, auto_retrain: bool | None = None
) -> ActiveLearningSettings:
    row = al_selectors.al_settings(project)
    if strategy is not None:
        if strategy not in ActiveLearningSettings.Strategy.values:
            raise ServiceError(
                gettext("Unknown strategy '%(strategy)s'; choose one of %(value)s.")
                % {"strategy": strategy, "value": ", ".join(ActiveLearningSettings.Strategy.values)}
            )
        row.strategy = strategy
    if batch_size is not None:
        if not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
            raise ServiceError(
                gettext("The batch size must be between 1 and %(max_batch_size)s.") % {"max_batch_size": MAX_BATCH_SIZE}
            )
        row.batch_size = int(batch_size)
    if auto_retrain is not None:
        row.auto_retrain = bool(auto_retrain)
    row.save()
    return row


# --- scoring the pool -------------------------------------------------------------------------------


def _model_inputs(version: ModelVersion, texts: list[str]) -> tuple[np.ndarray | None, np.ndarray]:
    """(features or None for a text-only model, calibrated probabilities) of a model version on texts."""
    from modeling.services.serving import load_predictor

    scored = load_predictor(version, cached=True).score(texts)
    return scored.features, np.asarray(scored.probs, dtype=np.float64)


def _default_features(texts: list[str]) -> np.ndarray:
    """Cold start: features of the default backbone (cached), for clustering the pool."""
    spec = feature_services.resolve_backbone_spec(None)
    extractor = feature_services.build_extractor(spec, feature_services.feature_config(spec, {}))
    features, _ = feature_services.extract_with_cache(extractor, texts)
    return features


def _cold_start(
    project: Project, ids: np.ndarray, texts: list[str], batch_size: int, seed: int, set_suggestions: Callable
) -> tuple[str, np.ndarray | None, np.ndarray]:
    """(strategy, probabilities or None, batch) without a trained model: the zero-shot model of the published
    taxonomy picks each predicted label's clearest texts in turn and its top-3 become the suggestions; without a
    published taxonomy there are no labels to score, and k-means clusters of the pool are sampled in proportion."""
    from modeling.services.zero_shot import score_texts

    zero = score_texts(project, texts)
    if zero is None:
        return "cold_start", None, active.cold_start(_default_features(texts), batch_size, seed=seed)
    set_suggestions(project, _suggestion_rows(zero.label_keys, ids, zero.probs), zero.ref)
    if not settings.ZERO_SHOT_COLD_START:
        # A taxonomy whose names do not separate its labels makes a worse first batch than clusters of the pool
        # (CIC, docs/ACTIVE_LEARNING.md): the owner can keep the clusters and still get the suggestions.
        features = zero.features if zero.features is not None else _default_features(texts)
        return "cold_start", None, active.cold_start(features, batch_size, seed=seed)
    return ZERO_SHOT_STRATEGY, zero.probs, active.zero_shot_cold_start(zero.probs, batch_size)


def _labelled_features(version: ModelVersion, pool_features: np.ndarray | None) -> np.ndarray | None:
    """Normalised features of the version's training examples (its explain index), as diversity anchors."""
    from modeling.services.serving import load_predictor

    if pool_features is None:
        return None
    index = load_predictor(version, cached=True).explain
    if index is None:
        return None
    return index.features if index.features.shape[1] == pool_features.shape[1] else None


def _labelled_counts(version: ModelVersion) -> np.ndarray:
    """Labels per class the version learnt from (its train + val snapshot), in its probabilities' column order."""
    index = {key: i for i, key in enumerate(version.label_keys)}
    counts = np.zeros(len(version.label_keys))
    for _item_id, key in version.training_snapshot:
        if key in index:
            counts[index[key]] += 1
    return counts


def score_pool(project: Project, *, trigger: str = "manual", seed: int = 0) -> ActiveLearningRound:
    """Rank every unlabelled item with the project's strategy and write the priorities to the labeling queue.

        With a model: the chosen strategy on its calibrated probabilities (margin_diverse spreads the batch over the
        feature space). Without one: the zero-shot model of the published taxonomy (margin_diverse on its scores, its
    top-3 stored as suggestions), or with no published taxonomy k-means clusters of the pool. Also records
        the model's predictions on a fixed stop set, for the "more labels are unlikely to help" signal, and stores
        the model's top-3 as suggestions shown to annotators.
    """
    from labeling.services.workspace import set_priorities, set_suggestions

    started = time.perf_counter()
    settings_row = al_selectors.al_settings(project)
    pool = al_selectors.unlabelled_pool(project)
    version = al_selectors.scoring_model(project)
    newest_id = al_selectors.newest_item_id(project)
    batch_ids: list[int] = []
    stop_predictions: list[str] = []
    agreement = None
    strategy = settings_row.strategy if version is not None else "cold_start"
    if pool:
        ids = np.array([p.item_id for p in pool])
        texts = [p.text for p in pool]
        if version is None:
            strategy, probs, batch = _cold_start(project, ids, texts, settings_row.batch_size, seed, set_suggestions)
        else:
            features, probs = _model_inputs(version, texts)
            if strategy == "margin_diverse" and features is None:
                strategy = "margin"  # a text-only model has no feature space to spread over
            batch = active.select_batch(
                strategy,
                settings_row.batch_size,
                probs=probs,
                features=features,
                labelled_features=_labelled_features(version, features),
                labelled_counts=_labelled_counts(version),
                seed=seed,
            )
            _store_suggestions(project, version, ids, probs, set_suggestions)
            stop_predictions, agreement = _stop_set_predictions(project, settings_row, version, ids, probs)
        scores = active.priority_scores(strategy, batch, len(pool), probs)
        set_priorities(project, {int(i): float(s) for i, s in zip(ids, scores, strict=True)})
        batch_ids = [int(i) for i in ids[batch]]
    settings_row.last_scored_item_id = newest_id
    settings_row.save(update_fields=["last_scored_item_id", "stop_set_item_ids", "updated_at"])
    round_ = ActiveLearningRound.objects.create(
        project=project,
        model_version=version,
        strategy=strategy,
        trigger=trigger,
        batch_size=settings_row.batch_size,
        pool_size=len(pool),
        gold_count=al_selectors.gold_count(project),
        batch_item_ids=batch_ids,
        stop_set_predictions=stop_predictions,
        agreement=agreement,
        seconds=round(time.perf_counter() - started, 3),
    )
    logger.info(
        "scored pool of project %s: %d items, strategy %s, batch %d, %.1fs",
        project.slug,
        len(pool),
        strategy,
        len(batch_ids),
        round_.seconds,
    )
    return round_


def _store_suggestions(
    project: Project, version: ModelVersion, ids: np.ndarray, probs: np.ndarray, set_suggestions: Callable
) -> None:
    keys = list(version.label_keys)
    if probs.shape[1] != len(keys):
        return
    set_suggestions(project, _suggestion_rows(keys, ids, probs), version.ref)


def _suggestion_rows(keys: list[str], ids: np.ndarray, probs: np.ndarray) -> list[tuple]:
    top = np.argsort(-probs, axis=1, kind="stable")[:, :SUGGESTION_TOPK]
    return [
        (
            int(item_id),
            keys[order[0]],
            float(row[order[0]]),
            [{"label": keys[j], "probability": round(float(row[j]), 4)} for j in order],
        )
        for item_id, row, order in zip(ids, probs, top, strict=True)
    ]


def _stop_set_predictions(
    project: Project, settings_row: ActiveLearningSettings, version: ModelVersion, ids: np.ndarray, probs: np.ndarray
) -> tuple[list[str], float | None]:
    """Predictions on the fixed stop set (chosen once from the pool, seeded) and the agreement with the
    previous model's predictions on the same items. Items labelled since stay in the set: the question is
    whether the model's answers still change, not whether they are right."""
    if not settings_row.stop_set_item_ids:
        rng = np.random.default_rng(project.pk)
        settings_row.stop_set_item_ids = sorted(int(i) for i in rng.permutation(ids)[:STOP_SET_SIZE])
    keys = list(version.label_keys)
    position = {int(item_id): row for row, item_id in enumerate(ids)}
    stop_ids = settings_row.stop_set_item_ids
    if not all(i in position for i in stop_ids):
        # Some stop-set items are no longer in the pool: predict them too.
        stop_predictions = _predict_items(project, version, stop_ids)
    else:
        stop_predictions = [keys[int(np.argmax(probs[position[i]]))] for i in stop_ids]
    previous = al_selectors.previous_comparable_round(project, version.id)
    agreement = None
    if previous is not None and len(previous.stop_set_predictions) == len(stop_predictions):
        agreement = active.prediction_agreement(previous.stop_set_predictions, stop_predictions)
    return stop_predictions, agreement


def _predict_items(project: Project, version: ModelVersion, item_ids: list[int]) -> list[str]:
    from labeling.models import Item

    texts_by_id = dict(Item.objects.filter(project=project, pk__in=item_ids).values_list("id", "text"))
    present = [i for i in item_ids if i in texts_by_id]
    if not present:
        return []
    _, probs = _model_inputs(version, [texts_by_id[i] for i in present])
    keys = list(version.label_keys)
    predicted = dict(zip(present, (keys[int(j)] for j in probs.argmax(axis=1)), strict=True))
    return [predicted.get(i, "") for i in item_ids]


# --- retrain triggers -------------------------------------------------------------------------------


def retrain_if_due(project: Project) -> Any | None:
    """Start a retrain once `retrain_every_n_gold` gold labels were added or changed since the last training
    run started (any trigger: a manual run resets the count too).

    Returns the started TrainingRun, or None (not due, switched off, a run already active, or data not ready:
    the reason is logged, never raised, because this runs from signals and beat)."""
    if not al_selectors.al_settings(project).auto_retrain or not _retrain_due(project):
        return None
    try:
        with transaction.atomic():
            # Checks of one project take turns: the count and the new run are one decision, so two checks
            # that both saw "due" cannot start two runs, even when the first run already finished.
            Project.objects.select_for_update().filter(pk=project.pk).first()
            return _start_retrain(project) if _retrain_due(project) else None
    except ServiceError as exc:  # e.g. not enough data yet, or the broker is down (the run then waits)
        logger.info("auto retrain of project %s not started: %s", project.slug, exc.message)
        return None


def _retrain_due(project: Project) -> bool:
    every = max(1, int(project.retrain_every_n_gold or 0))
    return not al_selectors.training_active(project) and al_selectors.gold_since_last_training(project) >= every


def _start_retrain(project: Project) -> Any:
    from modeling.services.training import start_training_run

    if al_selectors.unassigned_gold_count(project):
        # New gold labels from the queue carry no split and training reads train/val/test only: re-run
        # labeling's deterministic, group-aware split (the owner's split button does the same).
        from labeling.services.splits import assign_splits

        assign_splits(project=project)
    route, params = _last_route_and_params(project)
    # Sent when this transaction commits (start_training_run queues the task with on_commit).
    return start_training_run(project=project, route=route, params=params, trigger="auto_retrain")


def _last_route_and_params(project: Project) -> tuple[str, dict[str, Any]]:
    """Retrain with the route and settings of the latest successful run (backbone, head...), minus one-off
    flags."""
    from modeling.models import DEFAULT_ROUTE, TrainingRun

    last = (
        TrainingRun.objects.filter(project=project, status=TrainingRun.Status.SUCCEEDED)
        .exclude(trigger="extract")
        .order_by("-created_at")
        .first()
    )
    params = dict(last.params) if last else {}
    params.pop("auto_publish", None)
    if "incremental_from" in params:
        # An incremental run is followed by one that continues from the version it produced.
        params["incremental_from"] = last.model_version.number
    return (last.route if last else DEFAULT_ROUTE), params


def rescore_if_new_items(project: Project) -> ActiveLearningRound | None:
    """Beat: re-score when items arrived since the last scoring (an import, predictions queued for review)."""
    settings_row = al_selectors.al_settings(project)
    if al_selectors.newest_item_id(project) <= settings_row.last_scored_item_id:
        return None
    return score_pool(project, trigger="beat")


# --- offline simulation (manage.py simulate_active_learning) ----------------------------------------


def run_simulation(
    pool: LabelledFile,
    pool_x: np.ndarray,
    test: LabelledFile,
    test_x: np.ndarray,
    strategies: list[str],
    *,
    seed_size: int,
    batch_size: int,
    rounds: int,
    seed: int = 0,
    progress: Callable[[str, active.CurvePoint], None] | None = None,
) -> dict[str, Any]:
    """Every strategy from the same seed set; the result in the command's JSON contract shape."""
    classes = sorted(set(pool.labels) | set(test.labels))
    index = {key: i for i, key in enumerate(classes)}
    pool_y = np.array([index[k] for k in pool.labels])
    test_y = np.array([index[k] for k in test.labels])
    full = active.fit_logistic_probe(pool_x, pool_y, len(classes))
    full_macro, _ = active.evaluate(full, test_x, test_y, len(classes))
    seed_idx = active.initial_seed_set(pool_x, seed_size, seed)
    out: dict[str, Any] = {"full_pool_macro_f1": round(full_macro, 6), "strategies": {}}
    for strategy in strategies:
        result = active.simulate(
            strategy,
            pool_x,
            pool_y,
            test_x,
            test_y,
            len(classes),
            seed_idx,
            batch_size,
            rounds,
            seed=seed,
            progress=progress,
        )
        out["strategies"][strategy] = {
            "curve": [
                {"labels": p.labels, "macro_f1": round(p.macro_f1, 6), "accuracy": round(p.accuracy, 6)}
                for p in result.curve
            ],
            "labels_to_95": result.labels_to_reach(0.95 * full_macro),
        }
    return out
