"""The monitoring dashboard and the prediction log's filters in a real browser: an owner reads the figures of
constructed traffic, filters the log down to the corrected prediction, sees the feedback next to it, and
downloads the CSV of what the filters show."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from feedback.models import PredictionFeedback, PredictionLog
from feedback.services.predict import mask_and_hash
from modeling.models import ModelVersion
from tests.modeling.route1 import publish_scene_taxonomy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log(project, version, text, label, confidence, *, abstained=False, minutes_ago=5):
    masked, text_hash = mask_and_hash(text)
    row = PredictionLog.objects.create(
        project=project, model_version=version, text_masked=masked, text_hash=text_hash, label=label,
        confidence=confidence, abstained=abstained, topk=[{"label": label, "probability": confidence}], latency_ms=12.0,
    )  # fmt: skip
    PredictionLog.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return row


def test_dashboard_and_log_filters(new_page, live_server, project, owner, screenshot_dir):
    taxonomy = publish_scene_taxonomy(project)
    v1, v2 = (
        ModelVersion.objects.create(project=project, number=n, route="probe", taxonomy=taxonomy, artifacts_dir="-")
        for n in (1, 2)
    )
    paid = log(project, v1, "付款失败了", "支付", 0.9)
    lost = log(project, v1, "快递丢了", "支付", 0.7)
    log(project, v1, "天气不错", "其他", 0.2, abstained=True)
    log(project, v2, "密码忘了", "账户", 0.95)
    PredictionFeedback.objects.create(project=project, prediction=lost, correct_label="物流", comment="应是物流",
                                      fingerprint="a")  # fmt: skip
    PredictionFeedback.objects.create(project=project, prediction=paid, correct_label="支付", fingerprint="b")

    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/monitoring/")
    v1_row = page.locator("tr.version-total[data-version='v1']")
    cells = v1_row.locator("td").all_inner_texts()
    assert cells[:4] == ["3", "0.333", "0.667", "2"]  # volume, abstain rate, intervention rate, labelled
    assert cells[4] == "0.500"  # accuracy: 付款失败了 right, 快递丢了 wrong
    assert page.locator("tr.version-total[data-version='v2'] td").first.inner_text() == "1"
    assert page.locator("#monitoring-confusion").is_visible()
    assert page.locator(".plots svg").count() == 2  # daily series and production reliability
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "monitoring.png"), full_page=True)

    page.click("text=Prediction log")
    page.wait_for_selector("#log-filters")
    assert page.locator("#log-table tbody tr").count() == 4
    page.select_option("#log-filters select[name=corrected]", "yes")
    page.click("#log-filters button[type=submit]")
    page.wait_for_url("**corrected=yes**")
    rows = page.locator("#log-table tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-request-id") == str(lost.request_id)
    assert "物流" in rows.first.locator(".log-feedback").inner_text()
    assert "应是物流" in rows.first.locator(".log-feedback").inner_text()

    page.select_option("#log-filters select[name=corrected]", "")
    page.select_option("#log-filters select[name=version]", "1")
    page.select_option("#log-filters select[name=abstained]", "no")
    page.click("#log-filters button[type=submit]")
    page.wait_for_url("**version=1**")
    assert page.locator("#log-table tbody tr").count() == 2

    with page.expect_download() as download:
        page.click("#log-csv")
    content = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert str(paid.request_id) in content and str(lost.request_id) in content and "天气不错" not in content
