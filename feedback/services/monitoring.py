"""Drift checks of production traffic and the alerts they raise.

A check compares one window of a version's predictions with that version's training snapshot. Features of
both come through the feature cache (modeling.services.features): the logged texts are the PII-masked ones,
as the training items are, so both sides are extracted from the same kind of text by the same extractor
(the version's backbone, the deployment's fixed max_len), and a training text is never extracted twice.
The engine (modeling.engine.evaluation.drift) measures; this module picks the rows and stores the result."""

from __future__ import annotations

import json
import logging
import random
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext

from feedback.models import DriftCheck, MonitoringAlert, PredictionLog
from labeling.models import Item, Project
from modeling.models import Alias, ModelVersion
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

WEBHOOK_SCHEMES = ("http", "https")


def request_drift_check(
    *, project: Project, hours: float | None = None, now: datetime | None = None
) -> DriftCheck | None:
    """Queue a check of the last `hours` of traffic of the version that served most of it; None when the
    window has no prediction of a known version or a check of this project is still pending."""
    end = now or timezone.now()
    start = end - timedelta(hours=float(hours or settings.DRIFT_WINDOW_HOURS))
    version_id = _busiest_version(project, start, end)
    if version_id is None:
        return None
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        _give_up_unsent_checks(project, now=end)
        if DriftCheck.objects.filter(project=project, status=DriftCheck.Status.PENDING).exists():
            return None
        check = DriftCheck.objects.create(
            project=project, model_version_id=version_id, window_start=start, window_end=end
        )
        transaction.on_commit(lambda: _send_check(check.pk))
    return check


def _give_up_unsent_checks(project: Project, *, now: datetime) -> None:
    """A check still pending after two scheduling periods never reached a worker (the broker was down): it
    is marked failed, so the next one can start."""
    stale_before = now - timedelta(minutes=2 * int(settings.DRIFT_CHECK_MINUTES))
    DriftCheck.objects.filter(project=project, status=DriftCheck.Status.PENDING, created_at__lt=stale_before).update(
        status=DriftCheck.Status.FAILED, error=gettext("Never ran: the task queue did not take it."), finished_at=now
    )


def _busiest_version(project: Project, start: datetime, end: datetime) -> int | None:
    row = (
        PredictionLog.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
        .exclude(model_version=None)
        .exclude(role=Alias.SHADOW)
        .values("model_version")
        .annotate(n=Count("id"))
        .order_by("-n", "-model_version")
        .first()
    )
    return row["model_version"] if row else None


def _send_check(check_id: int) -> None:
    from feedback.tasks import check_drift
    from sceneclf_site.queueing import send_task_quietly

    send_task_quietly(check_drift, args=[check_id])


def request_due_checks(*, now: datetime | None = None) -> list[int]:
    """Beat: every project whose last check is older than DRIFT_CHECK_MINUTES gets a new one."""
    now = now or timezone.now()
    due_before = now - timedelta(minutes=int(settings.DRIFT_CHECK_MINUTES))
    started = []
    for project in Project.objects.filter(
        prediction_logs__created_at__gte=now - timedelta(hours=settings.DRIFT_WINDOW_HOURS)
    ).distinct():
        last = DriftCheck.objects.filter(project=project).order_by("-created_at").first()
        if last is not None and last.created_at > due_before:
            continue
        check = request_drift_check(project=project, now=now)
        if check is not None:
            started.append(check.pk)
    return started


def run_drift_check(check_id: int) -> DriftCheck:
    check = DriftCheck.objects.select_related("model_version", "model_version__run", "project").get(pk=check_id)
    if check.status != DriftCheck.Status.PENDING:
        return check
    try:
        _measure(check)
    except ServiceError as exc:
        check.status, check.error = DriftCheck.Status.FAILED, exc.message
    except Exception as exc:  # stored for the dashboard; the next scheduled check tries again
        logger.exception("drift check %s failed", check.pk)
        check.status, check.error = DriftCheck.Status.FAILED, f"{type(exc).__name__}"
    check.finished_at = timezone.now()
    with transaction.atomic():
        check.save()
        for alert in _alerts_for(check):
            transaction.on_commit(lambda pk=alert.pk: _send_delivery(pk))
    return check


def _measure(check: DriftCheck) -> None:
    from modeling.engine.evaluation.drift import MIN_SAMPLES, feature_drift, label_drift, novelty_drift

    version = check.model_version
    if version is None:
        raise ServiceError(gettext("The version of this window was deleted."))
    limit = int(settings.DRIFT_MAX_SAMPLES)
    window = list(
        PredictionLog.objects.filter(
            project=check.project,
            model_version=version,
            created_at__gte=check.window_start,
            created_at__lt=check.window_end,
        )
        .exclude(role=Alias.SHADOW)
        .values_list("text_masked", "topk", "label")
    )
    reference = _reference_rows(version)
    rng = random.Random(check.pk)
    window = rng.sample(window, min(limit, len(window)))
    reference = rng.sample(reference, min(limit, len(reference)))
    check.n_window, check.n_reference = len(window), len(reference)
    if min(len(window), len(reference)) < max(MIN_SAMPLES, int(settings.DRIFT_MIN_WINDOW)):
        check.status = DriftCheck.Status.SKIPPED
        check.detail = {"reason": "too_few_predictions", "min": max(MIN_SAMPLES, int(settings.DRIFT_MIN_WINDOW))}
        return
    window_features = extract_features(version, [text for text, _, _ in window])
    reference_features = extract_features(version, [text for text, _ in reference])
    features = feature_drift(reference_features, window_features, seed=check.pk)
    novelty = novelty_drift(reference_features, window_features, seed=check.pk)
    labels = label_drift(
        [_top_label(topk, label) for _, topk, label in window],
        [label for _, label in reference],
        confusion=_validation_confusion(version),
        seed=check.pk,
    )
    check.domain_auc, check.auc_threshold = features.auc, features.threshold
    check.feature_alert = features.alert or novelty.alert
    check.label_js, check.label_js_threshold, check.label_alert = labels.js_distance, labels.threshold, labels.alert
    check.detail = {"features": {**features.as_dict(), "novelty": novelty.as_dict()}, "labels": labels.as_dict()}
    check.status = DriftCheck.Status.DONE


def _validation_confusion(version: ModelVersion) -> tuple[list[str], list[list[int]]] | None:
    """The version's confusion on its validation split (top label before abstention), as training stored it."""
    confusion = (version.metrics or {}).get("val", {}).get("confusion") or {}
    labels, matrix = confusion.get("labels"), confusion.get("matrix")
    if not labels or not matrix or len(labels) != len(matrix):
        return None
    return [str(label) for label in labels], [[int(count) for count in row] for row in matrix]


def _top_label(topk: list[dict[str, Any]], label: str) -> str:
    """The model's own top label (before abstention), comparable with training labels."""
    return str(topk[0]["label"]) if topk else label


def _reference_rows(version: ModelVersion) -> list[tuple[str, str]]:
    labels = {int(item_id): str(label) for item_id, label in version.training_snapshot}
    texts = dict(Item.objects.filter(pk__in=labels).values_list("pk", "text"))
    return [(texts[pk], labels[pk]) for pk in sorted(labels) if pk in texts]


def extract_features(version: ModelVersion, texts: list[str]) -> np.ndarray:
    """Feature vectors of the version's backbone, through the feature cache."""
    from modeling.services import features as feature_services

    backbone = (version.run.params.get("backbone") if version.run else None) or version.backbone_name or None
    spec = feature_services.resolve_backbone_spec(backbone)
    extractor = feature_services.build_extractor(spec, feature_services.feature_config(spec, {}))
    matrix, _ = feature_services.extract_with_cache(extractor, texts)
    return matrix


def _alerts_for(check: DriftCheck) -> list[MonitoringAlert]:
    if check.status != DriftCheck.Status.DONE:
        return []
    version = f"v{check.model_version.number}" if check.model_version else "-"
    delivery = MonitoringAlert.Delivery.PENDING if check.project.alert_webhook_url else MonitoringAlert.Delivery.NONE
    alerts = []
    if check.feature_alert:
        alerts.append(
            MonitoringAlert(
                project=check.project,
                drift_check=check,
                kind=MonitoringAlert.Kind.FEATURE_DRIFT,
                message=_feature_message(check, version),
                detail=check.detail.get("features", {}),
                delivery=delivery,
            )
        )
    if check.label_alert:
        alerts.append(
            MonitoringAlert(
                project=check.project,
                drift_check=check,
                kind=MonitoringAlert.Kind.LABEL_DRIFT,
                message=gettext(
                    "The predicted labels of %(version)s moved away from those expected on its training data: "
                    "Jensen-Shannon distance %(js).3f above the threshold %(threshold).3f."
                )
                % {"version": version, "js": check.label_js, "threshold": check.label_js_threshold},
                detail=check.detail.get("labels", {}),
                delivery=delivery,
            )
        )
    return MonitoringAlert.objects.bulk_create(alerts)


def _feature_message(check: DriftCheck, version: str) -> str:
    novelty = check.detail.get("features", {}).get("novelty") or {}
    parts = []
    if novelty.get("alert"):
        parts.append(
            gettext(
                "%(share).1f%% of its %(n)s predictions lie farther from the training data than %(quantile).0f%% of "
                "training texts do (expected %(expected).1f%%, alert from %(threshold).1f%%)"
            )
            % {
                "share": 100 * novelty["share"],
                "quantile": 100 * novelty["quantile"],
                "n": check.n_window,
                "expected": 100 * novelty["expected_share"],
                "threshold": 100 * novelty["threshold"],
            }
        )
    if check.domain_auc is not None and check.auc_threshold is not None and check.domain_auc > check.auc_threshold:
        parts.append(
            gettext("domain-classifier AUC %(auc).3f above the threshold %(threshold).3f")
            % {"auc": check.domain_auc, "threshold": check.auc_threshold}
        )
    return gettext("Traffic of %(version)s drifted from its training data: %(reasons)s.") % {
        "version": version,
        "reasons": "; ".join(parts),
    }


def _send_delivery(alert_id: int) -> None:
    from feedback.tasks import deliver_alert
    from sceneclf_site.queueing import send_task_quietly

    send_task_quietly(deliver_alert, args=[alert_id])


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook answers itself: following a redirect could send the alert (and the server's request) to an
    address the owner never configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def webhook_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in WEBHOOK_SCHEMES or not parts.hostname:
        return gettext("The webhook URL must be http:// or https:// with a host.")
    return None


def deliver_alert(alert_id: int) -> MonitoringAlert:
    """POST the alert as JSON to the project's webhook. A hook that is down, slow or answers an error marks
    the alert `failed` with the reason; it never raises."""
    from feedback.selectors.monitoring import alert_dict

    alert = MonitoringAlert.objects.select_related("project").get(pk=alert_id)
    url = alert.project.alert_webhook_url
    if not url:
        alert.delivery = MonitoringAlert.Delivery.NONE
        alert.save(update_fields=["delivery"])
        return alert
    problem = webhook_url_problem(url)
    if problem:
        return _delivery_failed(alert, problem)
    payload = json.dumps({"project": alert.project.slug, "alert": alert_dict(alert)}, ensure_ascii=False).encode()
    request = urllib.request.Request(
        url, data=payload, method="POST", headers={"Content-Type": "application/json", "User-Agent": "sceneclf-alerts"}
    )
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=float(settings.ALERT_WEBHOOK_TIMEOUT_SECONDS)) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return _delivery_failed(alert, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return _delivery_failed(alert, type(getattr(exc, "reason", exc)).__name__)
    if not 200 <= status < 300:
        return _delivery_failed(alert, f"HTTP {status}")
    alert.delivery, alert.delivery_error, alert.delivered_at = MonitoringAlert.Delivery.DELIVERED, "", timezone.now()
    alert.save(update_fields=["delivery", "delivery_error", "delivered_at"])
    return alert


def _delivery_failed(alert: MonitoringAlert, reason: str) -> MonitoringAlert:
    logger.warning("alert %s not delivered to the project's webhook: %s", alert.pk, reason)
    alert.delivery, alert.delivery_error = MonitoringAlert.Delivery.FAILED, reason[:300]
    alert.save(update_fields=["delivery", "delivery_error"])
    return alert
