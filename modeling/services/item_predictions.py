"""A model version's predictions on the project's items, handed to labeling for the item browser and the
confusion-matrix click-through. Routes on frozen features read the feature cache (training already filled it
for the version's own items), so scoring the validation or test split runs only the head."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from labeling.models import Item, ItemPrediction
from labeling.services.predictions import PredictionRow, record_item_predictions
from modeling.models import ModelVersion
from modeling.services.serving import load_predictor

CHUNK = 2000


def predict_items_with_version(*, version: ModelVersion, item_ids: list[int] | None = None) -> int:
    """Score the given items (all of the project's items when None) with the version; returns how many."""
    items = Item.objects.filter(project_id=version.project_id).order_by("id")
    if item_ids is not None:
        items = items.filter(pk__in=item_ids)
    rows = list(items.values_list("id", "text"))
    if not rows:
        return 0
    predictor = load_predictor(version, cached=True)
    done = 0
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        done += _score_chunk(version, predictor, chunk)
    return done


def _score_chunk(version: ModelVersion, predictor: Any, rows: list[tuple[int, str]]) -> int:
    predictions = predictor.predict([text for _, text in rows], k=3)
    with transaction.atomic():
        return record_item_predictions(
            project=version.project,
            model_ref=version.ref,
            rows=[
                PredictionRow(
                    item_id=item_id,
                    label_key=p.top_label,
                    confidence=float(p.top_confidence),
                    topk=[{"label": key, "probability": float(prob)} for key, prob in p.topk],
                    abstained=bool(p.abstained),
                )
                for (item_id, _), p in zip(rows, predictions, strict=True)
            ],
        )


def ensure_split_predictions(*, version: ModelVersion, split: str) -> int:
    """Score the split's gold items that this version has no prediction for yet (the items behind its
    validation or test metrics); returns how many were scored now."""
    wanted = set(
        Item.objects.filter(project_id=version.project_id, split=split, gold__isnull=False).values_list("id", flat=True)
    )
    have = set(
        ItemPrediction.objects.filter(model_ref=version.ref, item_id__in=wanted).values_list("item_id", flat=True)
    )
    missing = sorted(wanted - have)
    return predict_items_with_version(version=version, item_ids=missing) if missing else 0


def request_item_scoring(*, version: ModelVersion) -> str:
    """Queue the scoring of every item with this version (a worker on the ml queue runs it); the task id."""
    from modeling.tasks_items import score_items_task
    from sceneclf_site.queueing import send_task

    return send_task(score_items_task, args=[version.pk])
