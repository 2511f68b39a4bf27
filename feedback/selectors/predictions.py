"""Reads of the prediction log."""

from __future__ import annotations

from django.db.models import Avg, Count, Q, QuerySet

from feedback.models import PredictionLog
from labeling.models import Project


def recent_predictions(project: Project, *, limit: int = 100) -> QuerySet[PredictionLog]:
    return PredictionLog.objects.filter(project=project).select_related("model_version").order_by("-created_at")[:limit]


def prediction_stats(project: Project) -> dict[str, float | int | None]:
    stats = PredictionLog.objects.filter(project=project).aggregate(
        total=Count("id"), abstained=Count("id", filter=Q(abstained=True)), mean_latency_ms=Avg("latency_ms")
    )
    stats["abstain_rate"] = stats["abstained"] / stats["total"] if stats["total"] else None
    return stats


def predictions_for_text(project: Project, text_hash: str, *, limit: int = 20) -> QuerySet[PredictionLog]:
    """Served predictions of this exact (masked, normalised) text, newest first: how clients saw the item."""
    return (
        PredictionLog.objects.filter(project=project, text_hash=text_hash)
        .select_related("model_version")
        .order_by("-created_at")[:limit]
    )
