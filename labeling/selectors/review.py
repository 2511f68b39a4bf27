"""Reads for the adjudication and review queues."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, QuerySet

from labeling.models import Annotation, GoldConflict, GoldLabel, Item, Project, ReviewTask
from labeling.selectors.history import GoldProvenance, gold_provenance_for
from labeling.selectors.workspace import target_k
from labeling.services.gold import plurality_suggestion


@dataclass(frozen=True)
class AdjudicationEntry:
    item: Item
    annotations: list[Annotation]
    suggestion: str | None  # the unique plurality label, offered only as a hint
    gold: GoldProvenance | None = None  # the gold label a review decision disputes
    conflicts: list[GoldConflict] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [annotation.label_key for annotation in self.annotations]


def adjudication_queue(project: Project, limit: int | None = None) -> list[AdjudicationEntry]:
    """Items with an open gold conflict (a review decision that differs from gold) first, then items
    without gold whose k annotations are all in and disagree."""
    conflicts: dict[int, list[GoldConflict]] = defaultdict(list)
    for conflict in (
        GoldConflict.objects.filter(project=project, status=GoldConflict.Status.OPEN)
        .select_related("proposed_by")
        .order_by("id")
    ):
        conflicts[conflict.item_id].append(conflict)
    ids = list(
        Item.objects.filter(project=project, gold__isnull=True)
        .annotate(n=Count("annotations"), distinct_labels=Count("annotations__label_key", distinct=True))
        .filter(distinct_labels__gte=2)
        .order_by("id")
        .values_list("id", "n", "text_hash")
    )
    ready = list(conflicts) + [
        item_id for item_id, n, text_hash in ids if n >= target_k(project, text_hash) and item_id not in conflicts
    ]
    if limit is not None:
        ready = ready[:limit]
    items = Item.objects.in_bulk(ready)
    golds = gold_provenance_for([item_id for item_id in ready if item_id in conflicts])
    by_item: dict[int, list[Annotation]] = defaultdict(list)
    for annotation in Annotation.objects.filter(item_id__in=ready).select_related("annotator").order_by("id"):
        by_item[annotation.item_id].append(annotation)
    return [
        AdjudicationEntry(
            item=items[item_id],
            annotations=by_item[item_id],
            suggestion=plurality_suggestion([a.label_key for a in by_item[item_id]]),
            gold=golds.get(item_id),
            conflicts=conflicts.get(item_id, []),
        )
        for item_id in ready
    ]


def open_review_tasks(project: Project, kind: str | None = None) -> QuerySet[ReviewTask]:
    """Riskiest first (reviewed downstream corrections carry a risk), then first come, first served."""
    tasks = (
        ReviewTask.objects.filter(project=project, status=ReviewTask.Status.OPEN)
        .select_related("item", "item__gold")
        .order_by("-risk", "created_at", "id")
    )
    return tasks.filter(kind=kind) if kind else tasks


def review_task_get(project: Project, task_id: int) -> ReviewTask | None:
    return ReviewTask.objects.filter(project=project, pk=task_id).select_related("item", "resolved_by").first()


def recheck_queue(project: Project) -> QuerySet[GoldLabel]:
    """Gold labels a taxonomy change marked: shown in the review queue as "re-check"."""
    return GoldLabel.objects.filter(item__project=project, needs_recheck=True).select_related("item").order_by("id")


def queue_counts(project: Project) -> dict[str, int]:
    return {
        "adjudication": len(adjudication_queue(project)),
        "review": open_review_tasks(project).count(),
        "recheck": recheck_queue(project).count(),
    }
