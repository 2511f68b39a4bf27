"""Dashboard figures computed from a constructed prediction log (exact numbers), the JSON API and the page,
and the prediction log's filters and CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import PredictionFeedback, PredictionLog
from feedback.selectors.monitoring import dashboard
from feedback.services.predict import mask_and_hash
from labeling.models import GoldLabel
from labeling.services.gold import set_gold
from labeling.services.items import get_or_create_item
from modeling.models import ModelVersion
from tests.modeling.route1 import publish_scene_taxonomy

pytestmark = pytest.mark.django_db


def log(project, version, when, text, label, confidence, latency, abstained=False):
    masked, text_hash = mask_and_hash(text)
    row = PredictionLog.objects.create(
        project=project,
        model_version=version,
        text_masked=masked,
        text_hash=text_hash,
        label=label,
        confidence=confidence,
        abstained=abstained,
        topk=[{"label": label, "probability": confidence}],
        latency_ms=latency,
    )
    PredictionLog.objects.filter(pk=row.pk).update(created_at=when)
    return row


def feedback(row, **fields):
    return PredictionFeedback.objects.create(
        project=row.project, prediction=row, fingerprint=str(len(fields)) + str(fields), **fields
    )


@pytest.fixture
def world(project, reviewer):
    taxonomy = publish_scene_taxonomy(project)
    v1, v2 = (
        ModelVersion.objects.create(project=project, number=n, route="probe", taxonomy=taxonomy, artifacts_dir="-")
        for n in (1, 2)
    )
    noon = timezone.localtime()  # "now": every row lies in the past, today's on today's local date
    midnight = noon.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday, today = midnight - timedelta(hours=2), max(midnight, noon - timedelta(minutes=1))
    rows = {
        "r1": log(project, v1, yesterday, "付款失败了", "支付", 0.9, 10),
        "r2": log(project, v1, yesterday, "快递丢了", "物流", 0.8, 20),
        "r3": log(project, v1, yesterday, "酒店订单有问题", "其他", 0.3, 30, abstained=True),
        "r4": log(project, v1, yesterday, "航班延误", "旅行", 0.6, 40),
        "r5": log(project, v1, today, "扣款两次", "支付", 0.5, 50),
        "r6": log(project, v2, today, "账号被封", "账户", 1.0, 5),
    }
    feedback(rows["r1"], correct_label="支付")
    feedback(rows["r2"], correct_label="支付", comment="应是支付")
    feedback(rows["r6"], outcome="resolved")
    item, _ = get_or_create_item(project=project, text="酒店订单有问题", source="predict")
    set_gold(item=item, label_key="旅行", taxonomy=taxonomy, method=GoldLabel.Method.REVIEW, decided_by=reviewer)
    return {"project": project, "rows": rows, "noon": noon, "yesterday": yesterday.date(), "today": today.date()}


def test_figures_per_version_and_day_are_exact(world):
    data = dashboard(world["project"], days=7, now=world["noon"])

    v1, v2 = data["versions"]
    assert (v1["version"], v2["version"]) == ("v1", "v2")
    day1 = v1["days"][0]
    assert day1["day"] == world["yesterday"].isoformat()
    assert {key: day1[key] for key in day1 if key != "day"} == {
        "volume": 4,
        "abstain_rate": 0.25,
        "intervention_rate": 0.5,  # r2 corrected, r3 abstained
        "corrected": 1,
        "labelled": 3,  # r1 (confirmed), r2 (corrected), r3 (reviewed gold)
        "accuracy": 0.333333,
        "macro_f1": 0.166667,  # 支付 F1 2/3, 物流 0, 其他 0, 旅行 0
        "expected_accuracy": 0.65,
        "expected_accuracy_labelled": 0.666667,
        "latency_p50_ms": 25.0,
        "latency_p99_ms": 39.7,
    }
    total = v1["total"]
    assert (total["volume"], total["abstain_rate"], total["intervention_rate"]) == (5, 0.2, 0.4)
    assert (total["expected_accuracy"], total["latency_p50_ms"], total["latency_p99_ms"]) == (0.62, 30.0, 49.6)
    assert v2["total"] == {
        "volume": 1,
        "abstain_rate": 0.0,
        "intervention_rate": 0.0,
        "corrected": 0,
        "labelled": 0,
        "accuracy": None,
        "macro_f1": None,
        "expected_accuracy": 1.0,
        "latency_p50_ms": 5.0,
        "latency_p99_ms": 5.0,
    }
    labels = data["labels"]
    assert labels["volume"] == {"其他": 1, "支付": 2, "旅行": 1, "物流": 1, "账户": 1}
    keys = labels["confusion"]["labels"]
    assert sorted(keys) == sorted(["支付", "物流", "其他", "旅行"])
    cell = {(t, p): labels["confusion"]["matrix"][keys.index(t)][keys.index(p)] for t in keys for p in keys}
    assert cell[("支付", "支付")] == 1 and cell[("支付", "物流")] == 1 and cell[("旅行", "其他")] == 1
    assert sum(map(sum, labels["confusion"]["matrix"])) == 3


def test_window_leaves_out_older_days(world):
    data = dashboard(world["project"], days=1, now=world["noon"])
    assert [day["day"] for version in data["versions"] for day in version["days"]] == [
        world["today"].isoformat(),
        world["today"].isoformat(),
    ]
    assert data["total"]["volume"] == 2


def test_json_api_and_page(client, world, owner, annotator):
    client.force_login(annotator)
    response = client.get("/api/v1/projects/alpha/monitoring?days=14")
    assert response.status_code == 200
    assert response.json()["total"]["volume"] == 6 and len(response.json()["versions"]) == 2
    bad = client.get("/api/v1/projects/alpha/monitoring?days=0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"
    page = client.get("/projects/alpha/monitoring/?days=14")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-version="v1"' in html and "<svg" in html and "monitoring-confusion" in html


def test_prediction_log_filters_and_csv(client, world, owner):
    client.force_login(owner)
    url = "/projects/alpha/predictions/"

    def shown(query: str) -> set[str]:
        html = client.get(url + query).content.decode()
        return {key for key, row in world["rows"].items() if str(row.request_id) in html}

    assert shown("") == set(world["rows"])
    assert shown("?version=2") == {"r6"}
    assert shown("?label=支付") == {"r1", "r5"}
    assert shown("?abstained=yes") == {"r3"}
    assert shown("?corrected=yes") == {"r2"}
    assert shown("?corrected=no&version=1") == {"r1", "r3", "r4", "r5"}
    day = world["yesterday"].isoformat()
    assert shown(f"?from={day}&to={day}") == {"r1", "r2", "r3", "r4"}
    assert "应是支付" in client.get(url + "?corrected=yes").content.decode()

    response = client.get(url + "?label=支付&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {row["request_id"] for row in rows} == {str(world["rows"][k].request_id) for k in ("r1", "r5")}
    r1 = next(row for row in rows if row["request_id"] == str(world["rows"]["r1"].request_id))
    assert (r1["model_version"], r1["feedback_labels"], r1["corrected"]) == ("v1", "支付", "0")
