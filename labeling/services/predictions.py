"""Per-item numbers that models hand over as plain data: a model version's predictions on items, and the label
check's label-issue scores. Labeling stores them for the item browser and the item page without knowing how
they were computed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from labeling.models import Item, ItemPrediction, LabelIssueScore, Project
from sceneclf_site.api_errors import ServiceError

BATCH = 1000


@dataclass(frozen=True)
class PredictionRow:
    item_id: int
    label_key: str
    confidence: float
    topk: list[dict[str, Any]]  # [{"label", "probability"}], best first
    abstained: bool = False

    @property
    def margin(self) -> float:
        """Top probability minus the runner-up's (1.0 with a single class)."""
        if len(self.topk) < 2:
            return 1.0
        return float(self.topk[0]["probability"]) - float(self.topk[1]["probability"])


@dataclass(frozen=True)
class IssueRow:
    item_id: int
    label_key: str  # the gold label that was scored
    score: float  # 1 − label quality: higher = more likely mislabelled
    suggested_label: str
    flagged: bool


def _require_items(project: Project, item_ids: list[int]) -> None:
    wanted = set(item_ids)
    found: set[int] = set()
    ordered = sorted(wanted)
    for start in range(0, len(ordered), BATCH):
        chunk = ordered[start : start + BATCH]
        found.update(Item.objects.filter(project=project, pk__in=chunk).values_list("id", flat=True))
    if wanted - found:
        raise ServiceError(
            gettext("%(n)s item id(s) are not in project '%(slug)s'.")
            % {"n": len(wanted - found), "slug": project.slug},
            code="unknown_items",
        )


@transaction.atomic
def record_item_predictions(*, project: Project, model_ref: str, rows: Iterable[PredictionRow]) -> int:
    """Store one model version's predictions, replacing that version's earlier ones for those items."""
    rows = list(rows)
    _require_items(project, [row.item_id for row in rows])
    ids = [row.item_id for row in rows]
    for start in range(0, len(ids), BATCH):
        ItemPrediction.objects.filter(model_ref=model_ref, item_id__in=ids[start : start + BATCH]).delete()
    ItemPrediction.objects.bulk_create(
        [
            ItemPrediction(
                project=project,
                item_id=row.item_id,
                model_ref=model_ref[:64],
                label_key=row.label_key,
                confidence=row.confidence,
                margin=round(row.margin, 6),
                abstained=row.abstained,
                topk=row.topk,
            )
            for row in rows
        ],
        batch_size=BATCH,
    )
    return len(rows)


@transaction.atomic
def set_label_issue_scores(*, project: Project, model_ref: str, rows: Iterable[IssueRow]) -> int:
    """The label check's score of each checked item's gold label (replaces the item's earlier score)."""
    rows = list(rows)
    _require_items(project, [row.item_id for row in rows])
    ids = [row.item_id for row in rows]
    for start in range(0, len(ids), BATCH):
        LabelIssueScore.objects.filter(item_id__in=ids[start : start + BATCH]).delete()
    LabelIssueScore.objects.bulk_create(
        [
            LabelIssueScore(
                item_id=row.item_id,
                label_key=row.label_key,
                score=round(row.score, 6),
                suggested_label=row.suggested_label,
                flagged=row.flagged,
                model_ref=model_ref[:64],
            )
            for row in rows
        ],
        batch_size=BATCH,
    )
    return len(rows)
