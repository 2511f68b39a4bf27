"""The cascade on the real weights: route 1 on multilingual-e5-small is published, `lora` trains a few steps
on the real decoder pack and becomes the re-check version, and the predict API answers through both."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from feedback.models import PredictionLog
from labeling.models import Project
from labeling.services.projects import create_api_token
from modeling.engine.routes.adapted_decoder import DEFAULT_DECODER
from modeling.services import training
from modeling.services.cascade import forget_cascade_state, update_cascade_settings


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_lora_on_the_real_decoder_rechecks_the_published_model_over_the_api():
    for pack in (settings.DEFAULT_BACKBONE, DEFAULT_DECODER):
        if not (settings.MODEL_ROOT / pack).is_dir():
            pytest.skip(f"install the pack first: manage.py backbones install {pack}")
    call_command("bootstrap_demo", verbosity=0)
    project = Project.objects.get(slug="demo")
    primary = training.start_training_run(project=project, auto_publish=True)
    primary.refresh_from_db()
    assert primary.status == "succeeded", primary.error
    # A few steps: 5 % of an epoch at batch 8 on the demo's train split.
    lora = training.start_training_run(project=project, route="lora", params={"epochs": 0.05, "checkpoint_every": 1000})
    lora.refresh_from_db()
    assert lora.status == "succeeded", lora.error
    recheck = lora.model_version
    assert recheck.route == "lora" and recheck.backbone_name == DEFAULT_DECODER
    forget_cascade_state()
    update_cascade_settings(
        project=project,
        enabled=True,
        recheck_version_number=recheck.number,
        tau_recheck=1.0,
        max_share=1.0,
        window_seconds=60,
        combine_rule="product",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_api_token(project=project, name='cascade').secret}")

    response = client.post(
        "/api/v1/projects/demo/predict",
        {"text": "快递三天了还没到，物流信息也不更新", "explain": "reason"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["stage"] == "recheck"
    first, second = body["stages"]
    assert first["model_version"] == primary.model_version.ref and second["model_version"] == recheck.ref
    assert second["label"] in recheck.label_keys and 0.0 < second["confidence"] <= 1.0 and second["ms"] > 0
    assert PredictionLog.objects.get(request_id=body["request_id"]).stages == body["stages"]
