"""Reads of an item's provenance: its gold label (how it was made, by whom), annotations and history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from labeling.models import Annotation, GoldConflict, GoldLabel, Item, ItemEvent, Project

DERIVED = {GoldLabel.Method.SINGLE, GoldLabel.Method.UNANIMOUS, GoldLabel.Method.MAJORITY}


@dataclass(frozen=True)
class GoldProvenance:
    label_key: str
    method: str
    method_display: str
    decided_by: str  # who decided (review, adjudication, re-check) or imported it; "" for derived gold
    annotators: list[tuple[str, str]] = field(default_factory=list)  # (username, label) for derived gold
    taxonomy_version: int = 0
    updated_at: datetime | None = None
    needs_recheck: bool = False
    recheck_reason: str = ""

    @property
    def by(self) -> str:
        """Who made it, in one phrase: the decider, or the annotators it was derived from."""
        if self.decided_by:
            return self.decided_by
        return ", ".join(username for username, _ in self.annotators)

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label_key,
            "method": self.method,
            "decided_by": self.decided_by or None,
            "annotators": [{"username": u, "label": label} for u, label in self.annotators],
            "taxonomy_version": self.taxonomy_version,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "needs_recheck": self.needs_recheck,
            "recheck_reason": self.recheck_reason,
        }


def gold_provenance(item: Item) -> GoldProvenance | None:
    return gold_provenance_for([item.pk]).get(item.pk)


def gold_provenance_for(item_ids: Iterable[int]) -> dict[int, GoldProvenance]:
    """Provenance of the gold label of each of these items that has one (three queries in all)."""
    ids = list(item_ids)
    golds = list(GoldLabel.objects.filter(item_id__in=ids).select_related("decided_by", "taxonomy"))
    derived = [gold.item_id for gold in golds if gold.method in DERIVED]
    votes: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for item_id, username, label in (
        Annotation.objects.filter(item_id__in=derived)
        .order_by("created_at", "id")
        .values_list("item_id", "annotator__username", "label_key")
    ):
        votes[item_id].append((username, label))
    importers = _importers([gold.item_id for gold in golds if gold.method == GoldLabel.Method.IMPORTED])
    return {
        gold.item_id: GoldProvenance(
            label_key=gold.label_key,
            method=gold.method,
            method_display=gold.get_method_display(),
            decided_by=gold.decided_by.get_username() if gold.decided_by else importers.get(gold.item_id, ""),
            annotators=votes.get(gold.item_id, []),
            taxonomy_version=gold.taxonomy.number,
            updated_at=gold.updated_at,
            needs_recheck=gold.needs_recheck,
            recheck_reason=gold.recheck_reason,
        )
        for gold in golds
    }


def _importers(item_ids: list[int]) -> dict[int, str]:
    rows = (
        ItemEvent.objects.filter(item_id__in=item_ids, kind=ItemEvent.Kind.IMPORTED, actor__isnull=False)
        .order_by("created_at", "id")
        .values_list("item_id", "actor__username")
    )
    return dict(rows)  # the latest import of an item wins


def item_get(project: Project, item_id: int) -> Item | None:
    return Item.objects.filter(project=project, pk=item_id).first()


def item_annotations(item: Item) -> list[Annotation]:
    return list(Annotation.objects.filter(item=item).select_related("annotator", "taxonomy").order_by("created_at"))


def item_history(item: Item) -> list[ItemEvent]:
    """Everything that happened to the item, oldest first."""
    return list(ItemEvent.objects.filter(item=item).select_related("actor").order_by("created_at", "id"))


def open_conflicts(item: Item) -> list[GoldConflict]:
    return list(
        GoldConflict.objects.filter(item=item, status=GoldConflict.Status.OPEN)
        .select_related("proposed_by")
        .order_by("id")
    )
