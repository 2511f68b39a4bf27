from __future__ import annotations

import pytest
from django.test import override_settings

from feedback.models import PredictionLog
from labeling.models import Item, ReviewTask
from labeling.services.projects import revoke_api_token
from modeling.services import versions
from tests.modeling.route1 import start_and_run, tiny_params

URL = "/api/v1/projects/alpha/predict"


@pytest.mark.django_db
def test_predict_one_text_with_token(published_model, token_client):
    response = token_client.post(URL, {"text": "我的付款失败了", "k": 2, "session_id": "s-1"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"label", "confidence", "topk", "abstained", "model_version", "request_id"}
    assert body["model_version"] == published_model.ref
    assert len(body["topk"]) == 2 and 0.0 <= body["confidence"] <= 1.0
    assert body["topk"][0]["probability"] >= body["topk"][1]["probability"]
    log = PredictionLog.objects.get(request_id=body["request_id"])
    assert log.model_version_id == published_model.id and log.session_id == "s-1"
    assert log.token_id == token_client.issued.token.id
    assert log.label == body["label"] and log.latency_ms > 0


@pytest.mark.django_db
def test_predict_batch_and_explain(published_model, token_client):
    texts = ["快递没到", "密码忘了怎么办", "机票改签"]
    response = token_client.post(URL, {"texts": texts, "explain": True}, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == 3 and len({r["request_id"] for r in results}) == 3
    neighbours = results[0]["explain"]["neighbours"]
    assert len(neighbours) == 3
    assert {"item_id", "text", "label", "similarity"} <= set(neighbours[0])
    assert neighbours[0]["similarity"] >= neighbours[-1]["similarity"]
    assert PredictionLog.objects.count() == 3


@pytest.mark.django_db
def test_logged_text_is_masked(published_model, token_client):
    token_client.post(URL, {"text": "付款失败 请联系 13812345678 或 a.b@example.com"}, format="json")
    log = PredictionLog.objects.get()
    assert "13812345678" not in log.text_masked and "example.com" not in log.text_masked
    assert "<PHONE>" in log.text_masked and "<EMAIL>" in log.text_masked


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"texts": ["好"] * 257}, "at most 256"),
        ({"text": "长" * 2001}, "limit is 2000"),
        ({"texts": ["ok", "x" * 2001]}, "texts[1]"),
        ({"text": "   "}, "empty"),
        ({"texts": ["fine", ""]}, "texts[1] is empty"),
        ({"texts": []}, "empty"),
        ({"texts": "not a list"}, "list"),
        ({"text": 5}, "must be a string"),
        ({"text": "a", "texts": ["b"]}, "exactly one"),
        ({}, "exactly one"),
        ({"text": "a", "k": 0}, "'k'"),
        ({"text": "a", "explain": "yes"}, "'explain'"),
    ],
)
def test_predict_limits_give_400_with_clear_message(published_model, token_client, body, needle):
    response = token_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]
    assert not PredictionLog.objects.exists()


@pytest.mark.django_db
def test_revoked_token_gets_401_at_once(published_model, token_client, scene_project):
    assert token_client.post(URL, {"text": "快递没到"}, format="json").status_code == 200
    revoke_api_token(project=scene_project, token_id=token_client.issued.token.id)
    response = token_client.post(URL, {"text": "快递没到"}, format="json")
    assert response.status_code == 401


@pytest.mark.django_db
def test_member_session_may_predict_and_anonymous_may_not(published_model, client, annotator):
    assert client.post(URL, {"text": "快递没到"}, content_type="application/json").status_code == 401
    client.force_login(annotator)
    assert client.post(URL, {"text": "快递没到"}, content_type="application/json").status_code == 200


@pytest.mark.django_db
def test_no_published_model_is_503_with_message(scene_project, token_client):
    response = token_client.post(URL, {"text": "快递没到"}, format="json")
    assert response.status_code == 503
    assert "no champion model" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_publishing_another_version_swaps_the_model_without_restart(published_model, token_client, tiny_backbone):
    first = token_client.post(URL, {"text": "快递没到"}, format="json").json()
    assert first["model_version"] == published_model.ref

    run = start_and_run(published_model.project, route="tfidf")
    versions.publish_model_version(version=run.model_version)
    second = token_client.post(URL, {"text": "快递没到"}, format="json").json()
    assert second["model_version"] == run.model_version.ref != first["model_version"]

    versions.rollback_model(project=published_model.project)
    third = token_client.post(URL, {"text": "快递没到"}, format="json").json()
    assert third["model_version"] == published_model.ref


@pytest.mark.django_db
def test_abstained_predictions_are_queued_for_review(scene_project, tiny_backbone, token_client):
    scene_project.abstain_target_kind = "coverage"
    scene_project.abstain_target = 0.05  # answer only the 5% most confident: nearly everything abstains
    scene_project.save()
    run = start_and_run(scene_project, params=tiny_params(tiny_backbone), auto_publish=True)

    texts = ["今天我想问一个完全无关的问题", "另一个奇怪的句子", "今天我想问一个完全无关的问题"]
    results = token_client.post(URL, {"texts": texts}, format="json").json()["results"]
    abstained = [r for r in results if r["abstained"]]
    assert abstained, results
    assert all(r["label"] == "其他" for r in abstained)
    tasks = ReviewTask.objects.filter(project=scene_project, kind=ReviewTask.Kind.ABSTAINED)
    distinct_abstained = {t for t, r in zip(texts, results, strict=True) if r["abstained"]}
    assert tasks.count() == len(distinct_abstained)
    task = tasks.first()
    assert task.item.source == "predict" and task.topk and task.model_version_ref == run.model_version.ref
    assert Item.objects.filter(project=scene_project, source="predict").count() == len(distinct_abstained)


@pytest.mark.django_db
@override_settings(PREDICT_MAX_TEXTS=2)
def test_limits_follow_settings(published_model, token_client):
    response = token_client.post(URL, {"texts": ["a", "b", "c"]}, format="json")
    assert response.status_code == 400 and "at most 2" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_predictions_page_predicts_and_lists_the_masked_log(published_model, client, owner):
    client.force_login(owner)
    response = client.post("/projects/alpha/predictions/", {"text": "快递没到 电话 13812345678"})
    html = response.content.decode()
    assert response.status_code == 200 and published_model.ref in html
    # The form echoes what the user typed; the log shows the masked text only.
    assert html.count("13812345678") == 1 and "&lt;PHONE&gt;" in html
    partial = client.post("/projects/alpha/predictions/", {"text": ""}, HTTP_HX_REQUEST="true")
    assert "is empty" in partial.content.decode() and "<html" not in partial.content.decode()


def _publish_for(project, tiny_backbone, **params):
    run = start_and_run(project, params={**tiny_params(tiny_backbone), **params}, auto_publish=True)
    assert run.status == "succeeded", run.error
    return run.model_version


@pytest.mark.django_db
def test_an_abstained_prediction_names_the_top_label_and_the_reason(scene_project, tiny_backbone, token_client):
    scene_project.abstain_target_kind = "coverage"
    scene_project.abstain_target = 0.05
    scene_project.save()
    version = _publish_for(scene_project, tiny_backbone)
    texts = ["今天我想问一个完全无关的问题", "另一个奇怪的句子", "asdfghjkl"]
    body = token_client.post(URL, {"texts": texts, "k": 6}, format="json").json()
    assert body["taxonomy_version"] == version.taxonomy.number
    abstained = [r for r in body["results"] if r["abstained"]]
    assert abstained
    for result in abstained:
        probabilities = {entry["label"]: entry["probability"] for entry in result["topk"]}
        assert result["label"] == "其他" and result["abstain_reason"] in {"below_threshold", "out_of_scope"}
        # confidence is the probability of the label returned, not of another label.
        assert result["confidence"] == pytest.approx(probabilities["其他"], abs=1e-6)
        assert result["top_label"] == result["topk"][0]["label"]
        assert result["top_confidence"] == pytest.approx(result["topk"][0]["probability"], abs=1e-6)
        assert result["taxonomy_version"] == version.taxonomy.number


@pytest.mark.django_db
def test_labels_the_latest_taxonomy_renamed_or_removed_are_mapped(scene_project, tiny_backbone, token_client, client,
                                                                   owner):  # fmt: skip
    from labeling.services.taxonomy import create_draft, delete_label, publish_draft, update_label

    scene_project.abstain_target_kind = "coverage"
    scene_project.abstain_target = 1.0  # answer everything: every text carries its top label
    scene_project.save()
    version = _publish_for(scene_project, tiny_backbone, ood_kind="none")
    texts = ["付款失败", "扣款两次", "快递没到", "包裹丢了", "机票改签", "航班延误"]
    before = token_client.post(URL, {"texts": texts}, format="json").json()["results"]
    predicted = [r["label"] for r in before]
    assert not any(r["abstained"] for r in before)
    removed = predicted[0]
    renamed = next(label for label in predicted if label not in {removed, "其他"})

    draft = create_draft(project=scene_project)
    delete_label(draft=draft, key=removed)
    update_label(draft=draft, key=renamed, data={"key": f"{renamed}2"})  # same name: a renamed key
    publish_draft(draft=draft)

    after = token_client.post(URL, {"texts": texts}, format="json").json()
    assert after["taxonomy_version"] == version.taxonomy.number  # what the model was trained on
    for old, new in zip(before, after["results"], strict=True):
        assert new["top_label"] == old["label"]
        if old["label"] == removed:
            assert new["abstained"] and new["label"] == "其他" and new["abstain_reason"] == "label_retired"
        elif old["label"] == renamed:
            assert not new["abstained"] and new["label"] == f"{renamed}2"
        else:
            assert new["label"] == old["label"] and not new["abstained"]

    client.force_login(owner)
    page = client.get(f"/projects/{scene_project.slug}/models/").content.decode()
    assert "Retrain due" in page and f"{renamed} → {renamed}2" in page and removed in page
