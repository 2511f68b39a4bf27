"""The feedback API: every per-item status, partial batches, idempotent repeats, masked comments, and a
correction that reaches gold only through a reviewer, with its provenance."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from feedback.models import PredictionFeedback
from labeling.models import GoldLabel, ItemEvent, ReviewTask
from labeling.services.projects import create_api_token, create_project
from labeling.services.review import resolve_review_task
from tests.modeling.route1 import publish_scene_taxonomy

PREDICT = "/api/v1/projects/alpha/predict"
FEEDBACK = "/api/v1/projects/alpha/feedback"


def predict(client, text: str) -> dict:
    response = client.post(PREDICT, {"text": text}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def wrong_label(prediction: dict) -> str:
    return "物流" if prediction["label"] != "物流" else "支付"


@pytest.mark.django_db
def test_batch_answers_each_status_and_stores_the_good_items(published_model, token_client, owner):
    first, second = predict(token_client, "我的付款失败了"), predict(token_client, "快递没到呢")
    other = create_project(slug="beta", name="Beta", owner=owner)
    publish_scene_taxonomy(other)
    correction = {"request_id": first["request_id"], "correct_label": wrong_label(first)}
    items = [
        correction,
        {"request_id": second["request_id"], "outcome": {"key": "rerouted", "value": "物流"}, "comment": "转给物流组"},
        {"request_id": "00000000-0000-4000-8000-000000000000", "correct_label": "物流"},
        {"request_id": second["request_id"], "correct_label": "不存在的标签"},
        {"request_id": "not-a-uuid", "correct_label": "物流"},
        {"request_id": second["request_id"]},
        {"request_id": second["request_id"], "label": "物流"},
        correction,
    ]

    response = token_client.post(FEEDBACK, {"items": items}, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "stored", "stored", "unknown_request_id", "unknown_label", "invalid", "invalid", "invalid", "duplicate",
    ]  # fmt: skip
    assert response.json()["stored"] == 2
    assert "label" in results[6]["message"]
    assert results[7]["feedback_id"] == results[0]["feedback_id"]
    assert PredictionFeedback.objects.count() == 2
    outcome = PredictionFeedback.objects.get(pk=results[1]["feedback_id"])
    assert (outcome.outcome, outcome.outcome_value, outcome.comment) == ("rerouted", "物流", "转给物流组")
    assert outcome.review_task is None  # no label: nothing for reviewers
    assert results[0]["review_task_id"] is not None

    # The same request id sent to another project's endpoint.
    issued = create_api_token(project=other, name="beta", created_by=owner)
    beta = APIClient()
    beta.credentials(HTTP_AUTHORIZATION=f"Token {issued.secret}")
    response = beta.post("/api/v1/projects/beta/feedback", [correction], format="json")
    assert response.json()["results"][0]["status"] == "other_project"


@pytest.mark.django_db
def test_single_item_errors_use_the_envelope(published_model, token_client):
    prediction = predict(token_client, "机票改签")
    unknown = token_client.post(FEEDBACK, {"request_id": "00000000-0000-4000-8000-000000000000", "comment": "x"},
                                format="json")  # fmt: skip
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_request_id"
    bad_label = token_client.post(FEEDBACK, {"request_id": prediction["request_id"], "correct_label": "nope"},
                                  format="json")  # fmt: skip
    assert bad_label.status_code == 400 and bad_label.json()["error"]["code"] == "unknown_label"
    empty = token_client.post(FEEDBACK, [], format="json")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_body"
    ok = token_client.post(FEEDBACK, {"request_id": prediction["request_id"], "outcome": "resolved"}, format="json")
    assert ok.status_code == 200 and ok.json()["results"][0]["status"] == "stored"
    anonymous = APIClient().post(FEEDBACK, {"request_id": prediction["request_id"], "outcome": "x"}, format="json")
    assert anonymous.status_code == 401


@pytest.mark.django_db
def test_comment_and_outcome_are_stored_without_pii(published_model, token_client, scene_project):
    scene_project.pii_field_mode = "hash"
    scene_project.save(update_fields=["pii_field_mode"])
    prediction = predict(token_client, "密码忘了")
    body = {
        "request_id": prediction["request_id"],
        "comment": "用户 13812345678 说分错了, 邮箱 a.b@example.com",
        "outcome": {"key": "callback", "value": "13900001111"},
    }
    assert token_client.post(FEEDBACK, body, format="json").status_code == 200
    stored = PredictionFeedback.objects.get()
    assert "13812345678" not in stored.comment and "<PHONE>" in stored.comment and "<EMAIL>" in stored.comment
    assert "13900001111" not in stored.outcome_value and stored.outcome_value.startswith("<HASH:")


@pytest.mark.django_db
def test_correction_becomes_gold_only_through_review_with_provenance(published_model, token_client, reviewer):
    prediction = predict(token_client, "为什么退货申请了")
    corrected = wrong_label(prediction)
    result = token_client.post(FEEDBACK, {"request_id": prediction["request_id"], "correct_label": corrected},
                               format="json").json()["results"][0]  # fmt: skip

    task = ReviewTask.objects.get(pk=result["review_task_id"])
    assert task.kind == ReviewTask.Kind.FEEDBACK and task.status == ReviewTask.Status.OPEN
    assert task.suggested_label == corrected and task.source_ref == prediction["request_id"]
    assert task.risk == pytest.approx(0.5 * prediction["confidence"] + 0.5 * 1.0, abs=1e-5)
    assert not GoldLabel.objects.filter(item=task.item).exists()  # not gold by itself

    outcome = resolve_review_task(project=task.project, task_id=task.pk, resolved_by=reviewer, action="confirm")

    gold = GoldLabel.objects.get(item=task.item)
    assert outcome.outcome == "gold_set"
    assert (gold.label_key, gold.method, gold.decided_by_id) == (corrected, GoldLabel.Method.FEEDBACK, reviewer.pk)
    event = ItemEvent.objects.filter(item=task.item, kind=ItemEvent.Kind.REVIEWED).get()
    assert event.actor_id == reviewer.pk and event.created_at is not None
    assert event.detail["source_ref"] == prediction["request_id"] and event.detail["method"] == "feedback"


@pytest.mark.django_db
def test_review_queue_puts_the_riskiest_correction_first(published_model, token_client):
    texts = ["我的付款失败了", "快递没到了", "机票改签呢", "密码忘了啊"]
    predictions = [predict(token_client, text) for text in texts]
    for prediction in predictions:
        body = {"request_id": prediction["request_id"], "correct_label": wrong_label(prediction)}
        token_client.post(FEEDBACK, body, format="json")
    from labeling.selectors.review import open_review_tasks

    risks = [task.risk for task in open_review_tasks(published_model.project, ReviewTask.Kind.FEEDBACK)]
    assert len(risks) == 4 and risks == sorted(risks, reverse=True)
