"""Reads of the prediction log: filters, the feedback next to each prediction, CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Avg, Count, Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from feedback.models import PredictionFeedback, PredictionLog
from labeling.models import Project
from modeling.models import Alias

EXPORT_LIMIT = 100_000


@dataclass(frozen=True)
class LogFilters:
    version: int | None = None
    label: str = ""
    abstained: bool | None = None
    corrected: bool | None = None
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_query(cls, query: dict[str, str]) -> LogFilters:
        """Lenient, like a search form: a value that does not parse is ignored."""
        return cls(
            version=_int_or_none(query.get("version")),
            label=(query.get("label") or "").strip()[:64],
            abstained=_bool_or_none(query.get("abstained")),
            corrected=_bool_or_none(query.get("corrected")),
            date_from=_date_or_none(query.get("from")),
            date_to=_date_or_none(query.get("to")),
        )


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def _bool_or_none(raw: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((raw or "").lower())


def _date_or_none(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def filtered_predictions(project: Project, filters: LogFilters) -> QuerySet[PredictionLog]:
    corrections = (
        PredictionFeedback.objects.filter(prediction=OuterRef("pk"))
        .exclude(correct_label="")
        .exclude(correct_label=OuterRef("label"))
    )
    logs = (
        PredictionLog.objects.filter(project=project)
        .exclude(role=Alias.SHADOW)  # answers nobody received; the dashboard compares them
        .annotate(corrected=Exists(corrections))
        .select_related("model_version")
        .prefetch_related(Prefetch("feedback", queryset=PredictionFeedback.objects.order_by("created_at", "id")))
        .order_by("-created_at", "-id")
    )
    if filters.version is not None:
        logs = logs.filter(model_version__number=filters.version)
    if filters.label:
        logs = logs.filter(label=filters.label)
    if filters.abstained is not None:
        logs = logs.filter(abstained=filters.abstained)
    if filters.corrected is not None:
        logs = logs.filter(corrected=filters.corrected)
    if filters.date_from:
        logs = logs.filter(created_at__gte=_local_midnight(filters.date_from))
    if filters.date_to:
        logs = logs.filter(created_at__lt=_local_midnight(filters.date_to + timedelta(days=1)))
    return logs


def recent_predictions(project: Project, *, limit: int = 100) -> QuerySet[PredictionLog]:
    return filtered_predictions(project, LogFilters())[:limit]


def filter_choices(project: Project) -> dict[str, list]:
    logs = PredictionLog.objects.filter(project=project).exclude(role=Alias.SHADOW)
    return {
        "versions": sorted(
            {n for n in logs.exclude(model_version=None).values_list("model_version__number", flat=True).distinct()}
        ),
        "labels": sorted(set(logs.values_list("label", flat=True).distinct())),
    }


def prediction_stats(project: Project) -> dict[str, float | int | None]:
    stats = (
        PredictionLog.objects.filter(project=project)
        .exclude(role=Alias.SHADOW)
        .aggregate(
            total=Count("id"), abstained=Count("id", filter=Q(abstained=True)), mean_latency_ms=Avg("latency_ms")
        )
    )
    stats["abstain_rate"] = stats["abstained"] / stats["total"] if stats["total"] else None
    stats["corrected"] = (
        PredictionFeedback.objects.filter(project=project)
        .exclude(correct_label="")
        .exclude(correct_label=F("prediction__label"))
        .values("prediction")
        .distinct()
        .count()
    )
    return stats


def predictions_for_text(project: Project, text_hash: str, *, limit: int = 20) -> QuerySet[PredictionLog]:
    """Served predictions of this exact (masked, normalised) text, newest first: how clients saw the item."""
    return (
        PredictionLog.objects.filter(project=project, text_hash=text_hash)
        .exclude(role=Alias.SHADOW)
        .select_related("model_version")
        .order_by("-created_at")[:limit]
    )


CSV_FIELDS = [
    "created_at",
    "request_id",
    "model_version",
    "label",
    "confidence",
    "abstained",
    "latency_ms",
    "session_id",
    "text_masked",
    "corrected",
    "feedback_labels",
    "feedback_outcomes",
    "feedback_comments",
]
# A cell a spreadsheet would run as a formula gets a leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def csv_lines(logs: QuerySet[PredictionLog]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    yield "\ufeff" + buffer.getvalue()  # spreadsheet programs then read the Chinese text as UTF-8
    for log in logs[:EXPORT_LIMIT]:
        buffer.seek(0)
        buffer.truncate()
        feedback = list(log.feedback.all())
        row = {
            "created_at": timezone.localtime(log.created_at).isoformat(),
            "request_id": str(log.request_id),
            "model_version": f"v{log.model_version.number}" if log.model_version else "",
            "label": log.label,
            "confidence": round(log.confidence, 6),
            "abstained": int(log.abstained),
            "latency_ms": log.latency_ms,
            "session_id": log.session_id,
            "text_masked": log.text_masked,
            "corrected": int(log.corrected),
            "feedback_labels": " | ".join(f.correct_label for f in feedback if f.correct_label),
            "feedback_outcomes": " | ".join(_outcome(f) for f in feedback if f.outcome),
            "feedback_comments": " | ".join(f.comment for f in feedback if f.comment),
        }
        writer.writerow({key: _cell(value) for key, value in row.items()})
        yield buffer.getvalue()


def _outcome(feedback: PredictionFeedback) -> str:
    return f"{feedback.outcome}={feedback.outcome_value}" if feedback.outcome_value else feedback.outcome
