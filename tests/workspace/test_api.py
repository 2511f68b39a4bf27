"""The workspace REST API: the same rules as the pages, JSON errors in the project's shape."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import Annotation, GoldLabel
from labeling.services.projects import create_api_token
from labeling.services.review import create_review_task

pytestmark = pytest.mark.django_db


def api(user=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_next_annotate_skip_undo(published, items, annotator):
    client = api(annotator)
    base = f"/api/v1/projects/{published.slug}"
    body = client.get(f"{base}/workspace/next").json()
    assert body["item"]["id"] and body["taxonomy_version"] == 1
    assert [label["hotkey"] for label in body["labels"]][:2] == ["1", "2"]
    response = client.post(f"{base}/annotations", {"item_id": body["item"]["id"], "label": "支付", "time_ms": 900})
    assert response.status_code == 201 and response.json()["label"] == "支付"
    other = client.post(f"{base}/annotations", {"item_id": body["item"]["id"], "label": "物流", "time_ms": 900})
    assert other.status_code == 409 and other.json()["error"]["code"] == "duplicate_annotation"
    following = client.get(f"{base}/workspace/next").json()["item"]["id"]
    assert client.post(f"{base}/workspace/skip", {"item_id": following, "reason": ""}).status_code == 400
    assert client.post(f"{base}/workspace/skip", {"item_id": following, "reason": "spam"}).status_code == 201
    assert client.post(f"{base}/workspace/undo").json() == {"item_id": following}
    unknown = client.post(f"{base}/annotations", {"item_id": following, "label": "nope", "time_ms": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_label"


def test_a_retried_submission_returns_the_stored_annotation(published, items, annotator):
    """The write committed while its client saw an error: the retry is a success, not a 409, and stores nothing."""
    client = api(annotator)
    base = f"/api/v1/projects/{published.slug}"
    item_id = client.get(f"{base}/workspace/next").json()["item"]["id"]
    first = client.post(f"{base}/annotations", {"item_id": item_id, "label": "支付", "time_ms": 900})
    retry = client.post(f"{base}/annotations", {"item_id": item_id, "label": "支付", "time_ms": 950})
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert Annotation.objects.filter(item_id=item_id).count() == 1


def test_idempotency_key_header_or_field(published, items, annotator):
    client = api(annotator)
    base = f"/api/v1/projects/{published.slug}"
    item_id = client.get(f"{base}/workspace/next").json()["item"]["id"]
    body = {"item_id": item_id, "label": "支付", "time_ms": 5}
    first = client.post(f"{base}/annotations", body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    by_field = client.post(f"{base}/annotations", {**body, "client_key": "k-1"})
    assert by_field.status_code == 200 and by_field.json()["id"] == first.json()["id"]
    assert Annotation.objects.get(pk=first.json()["id"]).client_key == "k-1"
    following = client.get(f"{base}/workspace/next").json()["item"]["id"]
    reused = client.post(f"{base}/annotations", {**body, "item_id": following, "client_key": "k-1"})
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "client_key_reused"
    assert Annotation.objects.filter(annotator=annotator).count() == 1


def test_roles_and_tokens(published, items, annotator, reviewer, owner):
    base = f"/api/v1/projects/{published.slug}"
    assert api(reviewer).get(f"{base}/workspace/next").status_code == 403
    assert api(annotator).get(f"{base}/review-tasks").status_code == 403
    assert api(annotator).get(f"{base}/workspace/settings").status_code == 403
    secret = create_api_token(project=published, name="ci").secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert client.get(f"{base}/workspace/next").status_code == 403
    assert api().get(f"{base}/workspace/next").status_code in (401, 403)


def test_review_and_adjudication_api(published, items, reviewer, owner, annotator):
    base = f"/api/v1/projects/{published.slug}"
    task = create_review_task(project=published, item=items[0], kind="low_confidence", suggested_label="物流")
    listed = api(reviewer).get(f"{base}/review-tasks?kind=low_confidence").json()
    assert [row["id"] for row in listed] == [task.pk]
    unknown = api(reviewer).get(f"{base}/review-tasks?kind=lowconfidence")
    assert unknown.status_code == 400 and "kind" in str(unknown.json())
    resolved = api(reviewer).post(f"{base}/review-tasks/{task.pk}/resolve", {"action": "confirm"}).json()
    assert resolved["resolution"] == "confirmed" and GoldLabel.objects.get(item=items[0]).method == "review"

    taxonomy = published.taxonomy_versions.get()
    Annotation.objects.create(item=items[1], annotator=annotator, label_key="支付", taxonomy=taxonomy, time_ms=1)
    Annotation.objects.create(item=items[1], annotator=owner, label_key="账户", taxonomy=taxonomy, time_ms=1)
    published.overlap_k = 2
    published.save()
    queue = api(reviewer).get(f"{base}/adjudication").json()
    assert [entry["item"]["id"] for entry in queue] == [items[1].pk]
    gold = api(reviewer).post(f"{base}/adjudication", {"item_id": items[1].pk, "label": "账户"})
    assert gold.status_code == 201 and gold.json()["method"] == "adjudicated"


def test_workspace_settings_api(published, owner):
    base = f"/api/v1/projects/{published.slug}/workspace/settings"
    assert api(owner).get(base).json()["assignment_ttl_minutes"] == 30
    changed = api(owner).patch(base, {"accept_majority": True, "agreement_batch_size": 5}, format="json").json()
    assert changed["accept_majority"] is True and changed["agreement_batch_size"] == 5
    assert api(owner).patch(base, {"assignment_ttl_minutes": 0}, format="json").status_code == 400
