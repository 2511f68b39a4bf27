"""Celery task that scores every item of a project with one model version, for the item browser's confidence
and margin columns (queue ml; thin: it calls one service)."""

from __future__ import annotations

from celery import shared_task

from modeling.models import ModelVersion


@shared_task(name="modeling.tasks_items.score_items", queue="ml", acks_late=True)
def score_items_task(version_id: int) -> int:
    from modeling.services.item_predictions import predict_items_with_version

    version = ModelVersion.objects.select_related("project", "taxonomy").filter(pk=version_id).first()
    return predict_items_with_version(version=version) if version else 0
