"""Reads for active learning: the unlabelled pool, queue sizes, the project's learning curve and stop signal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max

from labeling.models import GoldLabel, Item, Project, ReviewTask
from modeling.engine.selection.active import should_stop
from modeling.models import ACTIVE_RUN_STATUSES, ActiveLearningRound, ActiveLearningSettings, ModelVersion, TrainingRun

STOP_THRESHOLD = 0.99
STOP_ROUNDS = 3


@dataclass(frozen=True)
class PoolItem:
    item_id: int
    text: str


def al_settings(project: Project) -> ActiveLearningSettings:
    row, _ = ActiveLearningSettings.objects.get_or_create(project=project)
    return row


def unlabelled_pool(project: Project) -> list[PoolItem]:
    """Items without a gold label: what active learning ranks for the labeling queue."""
    rows = Item.objects.filter(project=project, gold__isnull=True).order_by("id").values_list("id", "text")
    return [PoolItem(item_id, text) for item_id, text in rows]


def newest_item_id(project: Project) -> int:
    return Item.objects.filter(project=project).aggregate(n=Max("id"))["n"] or 0


def gold_count(project: Project) -> int:
    """Gold labels training can use (a label awaiting a re-check does not count)."""
    return GoldLabel.objects.filter(item__project=project, needs_recheck=False).count()


def gold_since_last_training(project: Project) -> int:
    """Gold labels added or changed since the newest training run was created (all of them before any run)."""
    last = (
        TrainingRun.objects.filter(project=project)
        .exclude(trigger="extract")
        .exclude(status=TrainingRun.Status.CANCELLED)
        .order_by("-created_at")
        .first()
    )
    gold = GoldLabel.objects.filter(item__project=project, needs_recheck=False)
    return gold.filter(updated_at__gt=last.created_at).count() if last else gold.count()


def unassigned_gold_count(project: Project) -> int:
    return Item.objects.filter(project=project, gold__isnull=False, split="").count()


def scoring_model(project: Project) -> ModelVersion | None:
    """The model whose probabilities rank the pool: the newest non-archived version (it has seen the most
    labels); the published one is only for serving."""
    return (
        ModelVersion.objects.filter(project=project)
        .exclude(status=ModelVersion.Status.ARCHIVED)
        .order_by("-number")
        .first()
    )


def training_active(project: Project) -> bool:
    return TrainingRun.objects.filter(project=project, status__in=ACTIVE_RUN_STATUSES).exists()


def queue_counts(project: Project) -> dict[str, int]:
    """How many items wait in each queue: labeling (no gold yet) and the open review tasks per kind."""
    counts = {"labeling": Item.objects.filter(project=project, gold__isnull=True).count()}
    open_tasks = (
        ReviewTask.objects.filter(project=project, status=ReviewTask.Status.OPEN).values("kind").annotate(n=Count("id"))
    )
    by_kind = {row["kind"]: row["n"] for row in open_tasks}
    counts.update({f"review_{kind}": by_kind.get(kind, 0) for kind in ReviewTask.Kind.values})
    return counts


def _val_macro_f1(metrics: dict[str, Any]) -> float | None:
    val = metrics.get("val") or {}
    for candidate in (val, val.get("after") or {}, val.get("calibrated") or {}):
        value = candidate.get("macro_f1") if isinstance(candidate, dict) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def learning_curve(project: Project) -> list[dict[str, Any]]:
    """Val macro-F1 of each model version against the gold labels it was trained with, oldest first. Each point
    names its validation set; `same_val_set` tells whether it is the newest version's (directly comparable)."""
    points = []
    for version in ModelVersion.objects.filter(project=project).order_by("number"):
        counts = (version.metrics or {}).get("counts") or {}
        n_gold = sum(int(counts.get(split, 0) or 0) for split in ("train", "val", "test"))
        points.append(
            {
                "version": version.number,
                "gold_labels": n_gold or len(version.training_snapshot or []),
                "macro_f1": _val_macro_f1(version.metrics or {}),
                "val_set": (version.metrics or {}).get("val_set"),
                "created_at": version.created_at,
            }
        )
    newest = points[-1]["val_set"] if points else None
    for point in points:
        point["same_val_set"] = newest is not None and point["val_set"] == newest
    return points


def recent_rounds(project: Project, limit: int = 10) -> list[ActiveLearningRound]:
    return list(ActiveLearningRound.objects.filter(project=project).select_related("model_version")[:limit])


def previous_comparable_round(project: Project, model_version_id: int | None) -> ActiveLearningRound | None:
    """The latest round scored by another model, with stop-set predictions to compare against."""
    return (
        ActiveLearningRound.objects.filter(project=project, model_version__isnull=False)
        .exclude(model_version_id=model_version_id)
        .exclude(stop_set_predictions=[])
        .first()
    )


@dataclass(frozen=True)
class StopSignal:
    agreements: list[float]
    stop: bool
    threshold: float = STOP_THRESHOLD
    rounds: int = STOP_ROUNDS


def stopping_signal(project: Project) -> StopSignal:
    """Agreement of successive models on the stop set; "stop" once the last three all reach 0.99."""
    rows = ActiveLearningRound.objects.filter(project=project, agreement__isnull=False).order_by("created_at", "id")
    agreements = [float(a) for a in rows.values_list("agreement", flat=True)]
    return StopSignal(agreements, should_stop(agreements, STOP_THRESHOLD, STOP_ROUNDS))
