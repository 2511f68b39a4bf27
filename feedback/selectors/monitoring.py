"""Production figures computed from the prediction log: per version and day, per label, with realised
accuracy where feedback or a review gave a label and the confidence-based estimate (CBPE) everywhere.

Definitions (docs/API.md, "Monitoring"):
- abstain_rate: abstained / volume;
- intervention_rate: predictions that went to a person (abstained, hence queued for review, or corrected by
  feedback) / volume;
- the true label of a prediction: the gold label reviewers gave its text (methods review, feedback,
  adjudicated), else the latest `correct_label` sent as feedback; accuracy and macro_f1 are computed on the
  predictions that have one (`labelled`);
- expected_accuracy: the mean calibrated confidence of the answers (the expected share of right answers
  when the confidences are calibrated), for every prediction, labelled or not;
- latency_p50_ms / latency_p99_ms: percentiles of the logged model latency.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone
from sklearn.metrics import f1_score

from feedback.models import DriftCheck, MonitoringAlert, PredictionFeedback, PredictionLog
from labeling.models import GoldLabel, Project
from modeling.models import Alias

HUMAN_GOLD_METHODS = (GoldLabel.Method.REVIEW, GoldLabel.Method.FEEDBACK, GoldLabel.Method.ADJUDICATED)
MAX_DAYS = 90


@dataclass(frozen=True)
class LoggedPrediction:
    id: int
    version: str
    day: date
    label: str
    confidence: float
    abstained: bool
    latency_ms: float
    true_label: str | None
    corrected: bool
    role: str = Alias.CHAMPION

    @property
    def served(self) -> bool:
        return self.role != Alias.SHADOW


def window_bounds(days: int, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `days` local calendar days, today included."""
    now = timezone.localtime(now or timezone.now())
    start = (now - timedelta(days=max(1, min(days, MAX_DAYS)) - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, now + timedelta(microseconds=1)


def logged_predictions(project: Project, start: datetime, end: datetime) -> list[LoggedPrediction]:
    rows = list(
        PredictionLog.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
        .values_list(
            "id",
            "model_version__number",
            "created_at",
            "label",
            "confidence",
            "abstained",
            "latency_ms",
            "text_hash",
            "request_id",
            "role",
        )
    )
    corrections = _latest_corrections({row[8] for row in rows})
    gold = dict(
        GoldLabel.objects.filter(
            item__project=project, item__text_hash__in={row[7] for row in rows}, method__in=HUMAN_GOLD_METHODS
        ).values_list("item__text_hash", "label_key")
    )
    return [
        LoggedPrediction(
            id=pk,
            version=f"v{number}" if number is not None else "-",
            day=timezone.localtime(created).date(),
            label=label,
            confidence=float(confidence),
            abstained=bool(abstained),
            latency_ms=float(latency),
            true_label=gold.get(text_hash) or corrections.get(request_id),
            corrected=request_id in corrections and corrections[request_id] != label,
            role=role,
        )
        for pk, number, created, label, confidence, abstained, latency, text_hash, request_id, role in rows
    ]


def _latest_corrections(request_ids: set[Any]) -> dict[Any, str]:
    """The latest correction per request id: a shadow row is judged by the correction of the answer that
    was returned for the same request."""
    latest: dict[Any, str] = {}
    for request_id, label in (
        PredictionFeedback.objects.filter(prediction__request_id__in=request_ids)
        .exclude(correct_label="")
        .order_by("created_at", "id")
        .values_list("prediction__request_id", "correct_label")
    ):
        latest[request_id] = label
    return latest


def figures(rows: list[LoggedPrediction]) -> dict[str, Any]:
    """The figures of one group of predictions (a version on a day, a version, everything)."""
    volume = len(rows)
    if not volume:
        return {"volume": 0}
    labelled = [row for row in rows if row.true_label is not None]
    latency = np.asarray([row.latency_ms for row in rows])
    body: dict[str, Any] = {
        "volume": volume,
        "abstain_rate": _ratio(sum(row.abstained for row in rows), volume),
        "intervention_rate": _ratio(sum(row.abstained or row.corrected for row in rows), volume),
        "corrected": sum(row.corrected for row in rows),
        "labelled": len(labelled),
        "accuracy": None,
        "macro_f1": None,
        "expected_accuracy": round(float(np.mean([row.confidence for row in rows])), 6),
        "latency_p50_ms": round(float(np.percentile(latency, 50)), 3),
        "latency_p99_ms": round(float(np.percentile(latency, 99)), 3),
    }
    if labelled:
        truth = [row.true_label for row in labelled]
        answered = [row.label for row in labelled]
        body["accuracy"] = _ratio(sum(t == p for t, p in zip(truth, answered, strict=True)), len(labelled))
        body["macro_f1"] = round(
            float(
                f1_score(truth, answered, labels=sorted(set(truth) | set(answered)), average="macro", zero_division=0)
            ),
            6,
        )
        body["expected_accuracy_labelled"] = round(float(np.mean([row.confidence for row in labelled])), 6)
    return body


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6)


def per_label(rows: list[LoggedPrediction]) -> dict[str, Any]:
    """Volume per answered label, and the confusion (rows true, columns answered) of the labelled ones."""
    volume: dict[str, int] = defaultdict(int)
    for row in rows:
        volume[row.label] += 1
    labelled = [row for row in rows if row.true_label is not None]
    keys = sorted({row.label for row in labelled} | {row.true_label for row in labelled if row.true_label})
    index = {key: i for i, key in enumerate(keys)}
    matrix = [[0] * len(keys) for _ in keys]
    for row in labelled:
        matrix[index[row.true_label]][index[row.label]] += 1  # type: ignore[index]
    return {"volume": dict(sorted(volume.items())), "confusion": {"labels": keys, "matrix": matrix}}


def dashboard(project: Project, *, days: int = 14, now: datetime | None = None) -> dict[str, Any]:
    start, end = window_bounds(days, now=now)
    every_row = logged_predictions(project, start, end)
    rows = [row for row in every_row if row.served]
    by_version: dict[tuple[str, str], list[LoggedPrediction]] = defaultdict(list)
    for row in every_row:
        by_version[(row.version, row.role)].append(row)
    versions = []
    for (version, role), version_rows in sorted(by_version.items()):
        by_day: dict[date, list[LoggedPrediction]] = defaultdict(list)
        for row in version_rows:
            by_day[row.day].append(row)
        versions.append(
            {
                "version": version,
                "role": role,
                "total": figures(version_rows),
                "days": [{"day": day.isoformat(), **figures(day_rows)} for day, day_rows in sorted(by_day.items())],
            }
        )
    return {
        "project": project.slug,
        "window": {"start": start.isoformat(), "end": end.isoformat(), "days": max(1, min(days, MAX_DAYS))},
        "total": figures(rows),
        "versions": versions,
        "labels": per_label(rows),
        "drift": [drift_check_dict(check) for check in recent_drift_checks(project)],
        "alerts": [alert_dict(alert) for alert in recent_alerts(project)],
    }


def recent_drift_checks(project: Project, limit: int = 10) -> list[DriftCheck]:
    return list(DriftCheck.objects.filter(project=project).select_related("model_version")[:limit])


def recent_alerts(project: Project, limit: int = 20) -> list[MonitoringAlert]:
    return list(MonitoringAlert.objects.filter(project=project)[:limit])


def drift_check_dict(check: DriftCheck) -> dict[str, Any]:
    novelty = ((check.detail or {}).get("features") or {}).get("novelty") or {}
    return {
        "id": check.pk,
        "version": f"v{check.model_version.number}" if check.model_version else None,
        "status": check.status,
        "window_start": check.window_start.isoformat(),
        "window_end": check.window_end.isoformat(),
        "n_window": check.n_window,
        "n_reference": check.n_reference,
        "domain_auc": check.domain_auc,
        "auc_threshold": check.auc_threshold,
        "novelty_share": novelty.get("share"),
        "novelty_threshold": novelty.get("threshold"),
        "label_js": check.label_js,
        "label_js_threshold": check.label_js_threshold,
        "feature_alert": check.feature_alert,
        "label_alert": check.label_alert,
        "error": check.error,
        "created_at": check.created_at.isoformat(),
    }


def alert_dict(alert: MonitoringAlert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "message": alert.message,
        "detail": alert.detail,
        "delivery": alert.delivery,
        "delivery_error": alert.delivery_error,
        "created_at": alert.created_at.isoformat(),
    }


def production_reliability(project: Project, *, days: int = 14) -> dict | None:
    """Reliability bins of the labelled production answers, or None before any label arrived."""
    from modeling.engine.evaluation.drift import reliability_from_confidence

    start, end = window_bounds(days)
    labelled = [row for row in logged_predictions(project, start, end) if row.served and row.true_label is not None]
    if not labelled:
        return None
    confidence = np.asarray([row.confidence for row in labelled])
    correct = np.asarray([row.label == row.true_label for row in labelled])
    return reliability_from_confidence(confidence, correct)
