"""The cascade at predict time: settings and their validation, the response's stages, the log, the share cap,
explain "reason", and the model page's figures. A tiny random decoder trained with the `lora` route through
the app re-checks a published route-1 model on a tiny random encoder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from feedback.models import PredictionLog
from feedback.selectors.cascade import cascade_outcomes
from labeling.models import GoldLabel
from labeling.services.gold import set_gold
from labeling.services.items import get_or_create_item
from labeling.services.review import create_review_task, resolve_review_task
from modeling.models import CascadeSettings
from modeling.services.cascade import cascade_settings_for, forget_cascade_state, update_cascade_settings
from sceneclf_site.api_errors import ServiceError
from tests.modeling.route1 import scene_texts, start_and_run

URL = "/api/v1/projects/alpha/predict"
SETTINGS_URL = "/api/v1/projects/alpha/cascade"


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory):
    from tests.engine.tiny import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-decoder") / "tiny-qwen"
    make_tiny_backbone(path, kind="decoder", texts=[text for text, _ in scene_texts(40)])
    return path


@pytest.fixture(autouse=True)
def _fresh_cascade_state():
    forget_cascade_state()
    yield
    forget_cascade_state()


@pytest.fixture
def recheck_version(scene_project, published_model, tiny_decoder):
    params = {"backbone": str(tiny_decoder), "dtype": "fp32", "epochs": 0.2, "batch_size": 8}
    run = start_and_run(scene_project, route="lora", params=params)
    assert run.status == "succeeded", run.error
    return run.model_version


CANDIDATES = ["嗯", "好的吧", "这个那个", "随便问问", "你是谁", "今天吃什么", "有人吗", "哈哈", "在吗", "谢谢"]


@pytest.fixture
def unsure(published_model, token_client):
    """Texts the tiny primary is not certain of (a keyword text often gets probability 1.0 exactly)."""
    results = token_client.post(URL, {"texts": CANDIDATES}, format="json").json()["results"]
    PredictionLog.objects.all().delete()
    texts = [text for text, r in zip(CANDIDATES, results, strict=True) if r["top_confidence"] < 0.99]
    assert len(texts) >= 4, results
    return texts


def turn_on(project, version, **overrides):
    values = {
        "enabled": True,
        "recheck_version_number": version.number,
        "tau_recheck": 1.0,
        "max_share": 1.0,
        "window_seconds": 60,
        "combine_rule": "product",
        **overrides,
    }
    return update_cascade_settings(project=project, **values)


def test_the_settings_offer_the_engines_combine_rules():
    from modeling.engine.cascade import COMBINE_RULES, DEFAULT_RULE

    assert CascadeSettings.Combine.values == list(COMBINE_RULES)
    assert CascadeSettings._meta.get_field("combine_rule").default == DEFAULT_RULE


@pytest.mark.django_db
def test_settings_refuse_a_bad_choice_and_keep_the_old_values(scene_project, published_model, recheck_version):
    saved = turn_on(scene_project, recheck_version, tau_recheck=0.7)
    bad = [
        ({"recheck_version_number": published_model.number}, "'probe' version"),
        ({"recheck_version_number": 99}, "does not exist"),
        ({"tau_recheck": 0.0}, "tau_recheck"),
        ({"tau_recheck": 1.5}, "tau_recheck"),
        ({"max_share": -0.1}, "max_share"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"window_seconds": 2.5}, "window_seconds"),
        ({"combine_rule": "vote"}, "Unknown combine rule"),
        ({"recheck_version_number": None}, "Choose the re-check version"),
    ]
    for overrides, needle in bad:
        with pytest.raises(ServiceError, match=needle) as caught:
            turn_on(scene_project, recheck_version, **overrides)
        assert caught.value.code == "invalid_cascade"
    current = CascadeSettings.objects.get(project=scene_project)
    assert (current.tau_recheck, current.recheck_version_id, current.enabled) == (0.7, recheck_version.pk, True)
    assert current.pk == saved.pk


@pytest.mark.django_db
def test_a_recheck_version_whose_files_changed_is_refused(scene_project, published_model, recheck_version):
    route_file = next(p for p in Path(recheck_version.artifacts_dir, "route").rglob("*.json"))
    route_file.write_text(route_file.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(ServiceError, match="do not verify"):
        turn_on(scene_project, recheck_version)


@pytest.mark.django_db
def test_a_recheck_version_with_labels_the_primary_lacks_is_refused(scene_project, published_model, recheck_version):
    recheck_version.label_keys = [*recheck_version.label_keys, "外星人"]
    recheck_version.save(update_fields=["label_keys"])
    with pytest.raises(ServiceError, match="外星人"):
        turn_on(scene_project, recheck_version)


@pytest.mark.django_db
def test_settings_api_is_for_owners(scene_project, published_model, recheck_version, owner, reviewer):
    client = APIClient()
    client.force_authenticate(reviewer)
    assert client.get(SETTINGS_URL).status_code in (403, 404)
    client.force_authenticate(owner)
    body = client.get(SETTINGS_URL).json()
    assert body["enabled"] is False and body["recheck_version"] is None and body["combine_rule"] == "product"
    response = client.patch(
        SETTINGS_URL, {"enabled": True, "recheck_version": recheck_version.number, "tau_recheck": 0.9}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["recheck_version"] == recheck_version.number and response.json()["tau_recheck"] == 0.9
    refused = client.patch(SETTINGS_URL, {"recheck_version": published_model.number}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_cascade"
    assert cascade_settings_for(scene_project).recheck_version_id == recheck_version.pk


@pytest.mark.django_db
def test_without_a_cascade_every_text_is_answered_by_the_primary(published_model, token_client):
    body = token_client.post(URL, {"text": "快递没到"}, format="json").json()
    assert body["stage"] == "primary"
    [stage] = body["stages"]
    assert stage["stage"] == "primary" and stage["model_version"] == published_model.ref
    assert stage["label"] == body["top_label"] and stage["ms"] > 0
    assert PredictionLog.objects.get().stages == body["stages"]


@pytest.mark.django_db
def test_uncertain_texts_are_rechecked_and_the_log_keeps_both_stages(
    scene_project, published_model, recheck_version, token_client, unsure
):
    turn_on(scene_project, recheck_version)
    texts = unsure[:2]
    results = token_client.post(URL, {"texts": texts}, format="json").json()["results"]
    for result in results:
        assert result["stage"] == "recheck", result
        first, second = result["stages"]
        assert (first["stage"], first["model_version"]) == ("primary", published_model.ref)
        assert (second["stage"], second["model_version"]) == ("recheck", recheck_version.ref)
        assert second["label"] in recheck_version.label_keys and 0.0 < second["confidence"] <= 1.0
        assert second["ms"] > 0
        log = PredictionLog.objects.get(request_id=result["request_id"])
        assert log.stages == result["stages"] and log.model_version_id == published_model.pk
        assert log.label == result["label"]


@pytest.mark.django_db
def test_confident_texts_skip_the_recheck(scene_project, published_model, recheck_version, token_client, unsure):
    turn_on(scene_project, recheck_version, tau_recheck=0.01)
    body = token_client.post(URL, {"text": unsure[0]}, format="json").json()
    assert body["stage"] == "primary" and len(body["stages"]) == 1


@pytest.mark.django_db
def test_the_cap_bounds_the_share_rechecked(scene_project, published_model, recheck_version, token_client, unsure):
    turn_on(scene_project, recheck_version, max_share=0.5)
    results = token_client.post(URL, {"texts": unsure[:4]}, format="json")
    stages = [r["stage"] for r in results.json()["results"]]
    assert stages == ["recheck", "primary", "primary", "recheck"]
    turn_on(scene_project, recheck_version, max_share=0.0)
    body = token_client.post(URL, {"text": unsure[0]}, format="json").json()
    assert body["stage"] == "primary"


@pytest.mark.django_db
def test_a_disabled_cascade_does_not_recheck(scene_project, published_model, recheck_version, token_client, unsure):
    turn_on(scene_project, recheck_version, enabled=False)
    assert token_client.post(URL, {"text": unsure[0]}, format="json").json()["stage"] == "primary"


@pytest.mark.django_db
def test_settings_are_read_once_and_a_change_is_seen_on_the_next_request(
    scene_project, published_model, recheck_version, token_client, unsure
):
    turn_on(scene_project, recheck_version)
    assert token_client.post(URL, {"text": unsure[0]}, format="json").json()["stage"] == "recheck"
    with CaptureQueriesContext(connection) as queries:
        assert token_client.post(URL, {"text": unsure[1]}, format="json").json()["stage"] == "recheck"
    assert not [q for q in queries.captured_queries if CascadeSettings._meta.db_table in q["sql"]]

    turn_on(scene_project, recheck_version, enabled=False)
    assert token_client.post(URL, {"text": unsure[0]}, format="json").json()["stage"] == "primary"
    turn_on(scene_project, recheck_version)
    assert token_client.post(URL, {"text": unsure[0]}, format="json").json()["stage"] == "recheck"


@pytest.mark.django_db
def test_a_recheck_version_that_cannot_load_leaves_the_primary_answer(
    scene_project, published_model, recheck_version, token_client, unsure
):
    turn_on(scene_project, recheck_version)
    shutil.rmtree(Path(recheck_version.artifacts_dir) / "route")
    response = token_client.post(URL, {"text": unsure[0]}, format="json")
    assert response.status_code == 200 and response.json()["stage"] == "primary"


@pytest.mark.django_db
def test_explain_reason_comes_from_the_decoder_that_scored(
    scene_project, published_model, recheck_version, token_client, unsure
):
    plain = token_client.post(URL, {"text": "快递没到", "explain": "reason"}, format="json").json()
    assert plain["stage"] == "primary" and plain["explain"]["reason"] is None  # route 1 writes no reasons
    assert "neighbours" in plain["explain"]
    turn_on(scene_project, recheck_version)
    body = token_client.post(URL, {"text": unsure[0], "explain": "reason"}, format="json").json()
    assert body["stage"] == "recheck" and isinstance(body["explain"]["reason"], str)
    assert (
        "reason" not in token_client.post(URL, {"text": "快递没到", "explain": True}, format="json").json()["explain"]
    )
    refused = token_client.post(URL, {"text": "快递没到", "explain": "why"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_explain"


@pytest.mark.django_db
def test_model_page_shows_what_the_recheck_changed(
    scene_project, published_model, recheck_version, owner, reviewer, token_client, unsure
):
    turn_on(scene_project, recheck_version)
    texts = unsure[:6]
    taxonomy = published_model.taxonomy
    for text, label in zip(texts[:3], ["物流", "支付", "其他"], strict=True):
        item, _ = get_or_create_item(project=scene_project, text=text, source="test")
        set_gold(item=item, label_key=label, taxonomy=taxonomy, method="imported")
    # A reviewer's decision counts as the truth too, also once its gold label waits for a re-check.
    reviewed, _ = get_or_create_item(project=scene_project, text=texts[3], source="test")
    task = create_review_task(project=scene_project, item=reviewed, kind="abstained", suggested_label="物流")
    resolve_review_task(
        project=scene_project, task_id=task.pk, resolved_by=reviewer, action="correct", label_key="支付"
    )
    GoldLabel.objects.filter(item=reviewed).update(needs_recheck=True, recheck_reason="taxonomy changed")
    token_client.post(URL, {"texts": texts}, format="json")

    truth = {**dict(zip(texts[:3], ["物流", "支付", "其他"], strict=True)), texts[3]: "支付"}
    expected = {"changed": 0, "now": 0, "was": 0, "before": 0, "after": 0}
    for text, log in zip(texts, PredictionLog.objects.order_by("id"), strict=True):
        before, after = log.stages[0]["label"], log.topk[0]["label"]
        expected["changed"] += before != after
        if text in truth:
            expected["before"] += before == truth[text]
            expected["after"] += after == truth[text]
            if before != after:
                expected["now"] += after == truth[text]
                expected["was"] += before == truth[text]
    outcomes = cascade_outcomes(scene_project)
    assert (outcomes.n_rechecked, outcomes.n_predictions, outcomes.n_with_truth) == (6, 6, 4)
    assert outcomes.n_changed == expected["changed"]
    assert (outcomes.right_before, outcomes.right_after) == (expected["before"], expected["after"])
    assert (outcomes.changed_now_right, outcomes.changed_was_right) == (expected["now"], expected["was"])

    page = APIClient()
    page.force_login(owner)
    html = page.get("/projects/alpha/models/").content.decode()
    assert 'id="cascade-form"' in html and 'id="cascade-outcomes"' in html
    fragment = page.get("/projects/alpha/cascade-outcomes/").content.decode()
    assert f'<td id="cascade-changed">{expected["changed"]}</td>' in fragment
