"""Route 1 end to end on the real default weights: train in the app on the demo data, publish, and call the
predict endpoint over HTTP with a project token."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.conf import settings
from django.core.management import call_command

from labeling.models import Project
from labeling.services.projects import create_api_token
from modeling.services import training


def _post(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_model_answers_a_payment_complaint_over_http(live_server):
    if not (settings.MODEL_ROOT / settings.DEFAULT_BACKBONE).is_dir():
        pytest.skip(f"install the default pack first: manage.py backbones install {settings.DEFAULT_BACKBONE}")
    call_command("bootstrap_demo", verbosity=0)
    project = Project.objects.get(slug="demo")
    run = training.start_training_run(project=project, auto_publish=True)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.backbone_name == settings.DEFAULT_BACKBONE and len(version.backbone_fingerprint) == 64
    token = create_api_token(project=project, name="e2e").secret

    url = f"{live_server.url}/api/v1/projects/demo/predict"
    body = _post(url, token, {"text": "我付款成功了，钱也扣了，但订单还显示未支付", "k": 3, "explain": True})
    assert body["model_version"] == version.ref
    assert body["topk"][0]["label"] == "支付", body
    assert body["explain"]["neighbours"]
    batch = _post(url, token, {"texts": ["快递三天了还没到，物流信息也不更新", "我的账号被盗了，密码改不回来"]})
    assert [r["topk"][0]["label"] for r in batch["results"]] == ["物流", "账户"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fine_tuned_encoder_trains_on_the_real_pack_publishes_and_answers_over_http(live_server):
    if not (settings.MODEL_ROOT / settings.DEFAULT_BACKBONE).is_dir():
        pytest.skip(f"install the default pack first: manage.py backbones install {settings.DEFAULT_BACKBONE}")
    call_command("bootstrap_demo", verbosity=0)
    project = Project.objects.get(slug="demo")
    # A few steps: one epoch of LoRA on the demo's gold labels.
    run = training.start_training_run(project=project, route="encoder_ft", params={"max_epochs": 1}, auto_publish=True)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.route == "encoder_ft" and version.status == "published"
    assert version.backbone_name == settings.DEFAULT_BACKBONE and len(version.backbone_fingerprint) == 64
    token = create_api_token(project=project, name="e2e-ft").secret

    body = _post(f"{live_server.url}/api/v1/projects/demo/predict", token, {"text": "快递三天了还没到", "k": 3})
    assert body["model_version"] == version.ref
    assert len(body["topk"]) == 3 and 0.0 <= body["confidence"] <= 1.0
    assert body["label"] in {row["label"] for row in body["topk"]} | {"其他"}
