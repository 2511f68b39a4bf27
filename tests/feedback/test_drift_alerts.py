"""Drift checks of logged traffic against the served version's training snapshot, through the feature cache:
shifted traffic alerts (a real worker runs the check and delivers the alert to a local webhook), traffic
drawn from the training texts does not, and a webhook that is down never breaks the check."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import TestCase
from django.utils import timezone

from feedback.models import DriftCheck, MonitoringAlert, PredictionLog
from feedback.services.monitoring import deliver_alert, request_drift_check, request_due_checks
from feedback.services.predict import mask_and_hash
from labeling.models import Item
from labeling.services.projects import create_project, update_project_settings
from sceneclf_site.api_errors import ServiceError
from sceneclf_site.celery import app
from tests.worker import running_worker

WINDOW = 60


def log_traffic(version, texts: list[str]) -> None:
    rows = []
    for text in texts:
        masked, text_hash = mask_and_hash(text)
        rows.append(
            PredictionLog(
                project=version.project,
                model_version=version,
                text_masked=masked,
                text_hash=text_hash,
                label="其他",
                confidence=0.5,
                topk=[{"label": "其他", "probability": 0.5}],
                latency_ms=1.0,
            )
        )
    PredictionLog.objects.bulk_create(rows)


def training_texts(version) -> list[str]:
    ids = [item_id for item_id, _ in version.training_snapshot]
    return list(Item.objects.filter(pk__in=ids).values_list("text", flat=True))


def shifted_texts(n: int) -> list[str]:
    return [f"Order {i} shipped to warehouse zone {i % 7}, tracking pending since Monday" for i in range(n)]


class Hook:
    """A local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.close()


def run_check_inline(project) -> DriftCheck:
    with TestCase.captureOnCommitCallbacks(execute=True):
        check = request_drift_check(project=project)
    check.refresh_from_db()
    return check


@pytest.mark.django_db
def test_traffic_like_the_training_data_does_not_alert(published_model, scene_project):
    texts = training_texts(published_model)
    log_traffic(published_model, (texts * 2)[:WINDOW])

    check = run_check_inline(scene_project)

    assert check.status == DriftCheck.Status.DONE, check.error
    assert check.n_window == WINDOW and check.n_reference == len(texts)
    assert abs(check.domain_auc - 0.5) < 0.15
    assert not check.feature_alert and check.auc_threshold >= 0.65
    novelty = check.detail["features"]["novelty"]
    assert not novelty["alert"] and novelty["share"] < novelty["threshold"]
    assert check.detail["labels"]["confusion"]  # expected labels go through the version's validation errors
    assert not MonitoringAlert.objects.filter(kind=MonitoringAlert.Kind.FEATURE_DRIFT).exists()


@pytest.mark.django_db
def test_too_little_traffic_is_skipped(published_model, scene_project):
    log_traffic(published_model, shifted_texts(5))
    check = run_check_inline(scene_project)
    assert check.status == DriftCheck.Status.SKIPPED and check.domain_auc is None


@pytest.mark.django_db
def test_webhook_down_marks_the_alert_failed(published_model, scene_project):
    scene_project.alert_webhook_url = "http://127.0.0.1:9/never"
    scene_project.save(update_fields=["alert_webhook_url"])
    log_traffic(published_model, shifted_texts(WINDOW))

    check = run_check_inline(scene_project)

    assert check.status == DriftCheck.Status.DONE and check.feature_alert
    assert check.detail["features"]["novelty"]["share"] == 1.0
    alert = MonitoringAlert.objects.get(kind=MonitoringAlert.Kind.FEATURE_DRIFT)
    assert alert.delivery == MonitoringAlert.Delivery.FAILED and alert.delivery_error
    assert "100.0%" in alert.message and "AUC" in alert.message


@pytest.mark.django_db
def test_webhook_error_status_and_non_http_urls_fail_cleanly(published_model, scene_project):
    failing = Hook(status=500)
    try:
        scene_project.alert_webhook_url = failing.url
        scene_project.save(update_fields=["alert_webhook_url"])
        alert = MonitoringAlert.objects.create(project=scene_project, kind="feature_drift", message="m",
                                               delivery="pending")  # fmt: skip
        assert deliver_alert(alert.pk).delivery_error == "HTTP 500"
        scene_project.alert_webhook_url = "file:///etc/passwd"
        scene_project.save(update_fields=["alert_webhook_url"])
        assert deliver_alert(alert.pk).delivery == MonitoringAlert.Delivery.FAILED
    finally:
        failing.close()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_checks_shifted_traffic_and_posts_the_alert(published_model, scene_project, hook):
    scene_project.alert_webhook_url = hook.url
    scene_project.retrain_every_n_gold = 1_000_000
    scene_project.save(update_fields=["alert_webhook_url", "retrain_every_n_gold"])
    log_traffic(published_model, shifted_texts(WINDOW))

    with running_worker():
        check = request_drift_check(project=scene_project)
        deadline = time.monotonic() + 120
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.3)

    check.refresh_from_db()
    assert check.status == DriftCheck.Status.DONE, check.error
    assert check.feature_alert and check.domain_auc > 0.9 > check.auc_threshold
    alert = MonitoringAlert.objects.get(kind=MonitoringAlert.Kind.FEATURE_DRIFT)
    assert alert.delivery == MonitoringAlert.Delivery.DELIVERED
    (body,) = [b for b in hook.received if b["alert"]["kind"] == "feature_drift"]
    assert body["project"] == scene_project.slug and body["alert"]["id"] == alert.pk
    assert body["alert"]["detail"]["auc"] == check.domain_auc


@pytest.mark.django_db
def test_a_check_that_never_reached_a_worker_does_not_block_the_next(published_model, scene_project):
    log_traffic(published_model, shifted_texts(5))
    stuck = request_drift_check(project=scene_project)  # its on_commit send never runs in this test
    assert request_drift_check(project=scene_project) is None  # one pending check at a time
    DriftCheck.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=3))

    assert request_drift_check(project=scene_project) is not None
    stuck.refresh_from_db()
    assert stuck.status == DriftCheck.Status.FAILED and "Never ran" in stuck.error


@pytest.mark.django_db
def test_beat_starts_a_check_only_where_one_is_due(published_model, scene_project, owner):
    create_project(slug="quiet", name="Quiet", owner=owner)  # no traffic: no check
    log_traffic(published_model, shifted_texts(3))
    schedule = app.conf.beat_schedule["feedback-drift-checks"]
    assert schedule["task"] == "feedback.tasks.request_due_drift_checks"

    first = request_due_checks()
    again = request_due_checks()  # the first is still pending (its send waits for the commit)

    assert len(first) == 1 and again == []
    assert DriftCheck.objects.get(pk=first[0]).project_id == scene_project.pk


@pytest.mark.django_db
def test_webhook_url_must_be_http_or_https(scene_project):
    for bad in ("ftp://example.com/hook", "file:///etc/passwd", "http://"):
        with pytest.raises(ServiceError) as raised:
            update_project_settings(project=scene_project, alert_webhook_url=bad)
        assert "alert_webhook_url" in raised.value.details
    update_project_settings(project=scene_project, alert_webhook_url="https://hooks.example.com/sceneclf")
    scene_project.refresh_from_db()
    assert scene_project.alert_webhook_url == "https://hooks.example.com/sceneclf"
