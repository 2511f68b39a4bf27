"""The item browser, its confirmation step, the item page and the version comparison speak Chinese in zh-hans,
with their data in place (predictions, label-issue scores, saved views, two versions)."""

from __future__ import annotations

import pytest
from django.conf import settings

from labeling.models import GoldLabel
from labeling.services.browser import save_view
from labeling.services.gold import set_gold
from labeling.services.predictions import IssueRow, PredictionRow, record_item_predictions, set_label_issue_scores
from modeling.models import ModelVersion
from tests.test_translations import english_words
from tests.workspace.factories import make_items, publish_scenes

pytestmark = pytest.mark.django_db

METRICS = {
    "val": {
        "accuracy": 0.8,
        "macro_f1": 0.7,
        "calibration": {"ece": 0.05, "ece_before": 0.1},
        "abstention": {"coverage": 0.9, "selective_accuracy": 0.9},
        "per_class": {"支付": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 10}},
        "confusion": {"labels": ["支付", "物流"], "matrix": [[7, 3], [1, 9]]},
    }
}


def test_browser_pages_have_no_english_ui_words(client, owner, project):
    taxonomy = publish_scenes(project)
    items = make_items(project, ["付款成功但是订单显示未支付", "快递三天了还没到"])
    set_gold(item=items[0], label_key="支付", taxonomy=taxonomy, method=GoldLabel.Method.IMPORTED)
    probs = [{"label": "支付", "probability": 0.6}, {"label": "物流", "probability": 0.3}]
    record_item_predictions(
        project=project, model_ref="alpha@v1", rows=[PredictionRow(items[0].pk, "支付", 0.6, probs)]
    )
    set_label_issue_scores(
        project=project, model_ref="alpha@v1", rows=[IssueRow(items[0].pk, "支付", 0.7, "物流", True)]
    )
    save_view(project=project, user=owner, name="低置信", query="conf_max=0.6")
    for number in (1, 2):
        ModelVersion.objects.create(
            project=project,
            number=number,
            route="probe",
            taxonomy=taxonomy,
            label_keys=["支付", "物流"],
            artifacts_dir="unused",
            metrics=METRICS,
        )
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    client.force_login(owner)
    pages = {
        "browser": client.get("/projects/alpha/items/", {"sort": "-confidence"}),
        "item": client.get(f"/projects/alpha/items/{items[0].pk}/"),
        "compare": client.get("/projects/alpha/models/compare/", {"a": 1, "b": 2}),
        "version": client.get("/projects/alpha/models/v1/"),
        "served": client.get(f"/projects/alpha/items/{items[0].pk}/served/"),
    }
    for action, value in (("split", "test"), ("queue", "annotation"), ("relabel", "物流"), ("delete", "")):
        form = {"action": action, "value": value, "ids": [i.pk for i in items], "reason": "原因"}
        pages[f"confirm {action}"] = client.post("/projects/alpha/items/bulk/", form)
    bad = {}
    for name, response in pages.items():
        assert response.status_code == 200, name
        words = english_words(response.content.decode())
        if words:
            bad[name] = sorted(words)
    assert not bad, bad
