"""The HTML pages: permissions, htmx panels, review and agreement flows through the test client."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Annotation, GoldLabel, ReviewTask, Skip
from labeling.services.review import create_review_task

pytestmark = pytest.mark.django_db


def url(name, project, *args):
    return reverse(f"labeling:{name}", args=[project.slug, *args])


def test_workspace_page_shows_item_labels_and_hotkeys(client, published, items, annotator):
    client.force_login(annotator)
    response = client.get(url("workspace", published))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-hotkey="1"' in html and 'data-key="旅行"' in html and 'data-hotkey="0"' in html
    assert "ws-label-form" in html and "只要主要诉求是旅行就选它" in html


def test_htmx_submit_returns_next_panel_and_records(client, published, items, annotator):
    client.force_login(annotator)
    client.get(url("workspace", published))
    item_id = published.items.filter(assignments__annotator=annotator).get().pk
    response = client.post(
        url("workspace_submit", published),
        {"item_id": item_id, "label": "支付", "time_ms": "2345"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="ws-item"' in html
    annotation = Annotation.objects.get(annotator=annotator)
    assert (annotation.item_id, annotation.label_key, annotation.time_ms) == (item_id, "支付", 2345)


def test_bad_label_shows_error_and_keeps_item(client, published, items, annotator):
    client.force_login(annotator)
    client.get(url("workspace", published))
    item_id = published.items.filter(assignments__annotator=annotator).get().pk
    response = client.post(url("workspace_submit", published), {"item_id": item_id, "label": "nope", "time_ms": "1"})
    assert 'id="ws-error"' in response.content.decode()
    assert f'data-item-id="{item_id}"' in response.content.decode()
    assert not Annotation.objects.exists()


def test_skip_and_undo_through_pages(client, published, items, annotator):
    client.force_login(annotator)
    client.get(url("workspace", published))
    item_id = published.items.filter(assignments__annotator=annotator).get().pk
    client.post(url("workspace_skip", published), {"item_id": item_id, "reason": "unclear"})
    assert Skip.objects.get().reason == "unclear"
    response = client.post(url("workspace_undo", published))
    assert not Skip.objects.exists()
    assert f'data-item-id="{item_id}"' in response.content.decode()


def test_reviewer_cannot_annotate_and_annotator_cannot_review(client, published, annotator, reviewer):
    client.force_login(reviewer)
    assert client.get(url("workspace", published)).status_code == 403
    client.force_login(annotator)
    assert client.get(url("review", published)).status_code == 403
    assert client.get(url("adjudication", published)).status_code == 403
    assert client.get(url("agreement", published)).status_code == 403


def test_review_task_page_corrects(client, published, items, reviewer):
    task = create_review_task(
        project=published, item=items[0], kind="abstained", topk=[{"label": "旅行", "probability": 0.4}]
    )
    client.force_login(reviewer)
    page = client.get(url("review_task", published, task.pk)).content.decode()
    assert items[0].text in page and "0.400" in page
    client.post(url("review_task", published, task.pk), {"action": "correct", "label": "旅行", "comment": "ok"})
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.RESOLVED
    assert GoldLabel.objects.get(item=items[0]).method == GoldLabel.Method.REVIEW


def test_agreement_page_renders_report(client, published, items, owner, annotator, reviewer):
    taxonomy = published.taxonomy_versions.get(status="published")
    for item, (a, b) in zip(
        items[:4], [("支付", "支付"), ("物流", "支付"), ("旅行", "旅行"), ("其他", "旅行")], strict=True
    ):
        Annotation.objects.create(item=item, annotator=annotator, label_key=a, taxonomy=taxonomy, time_ms=1)
        Annotation.objects.create(item=item, annotator=owner, label_key=b, taxonomy=taxonomy, time_ms=1)
    client.force_login(owner)
    client.post(url("agreement_recompute", published))
    html = client.get(url("agreement", published)).content.decode()
    assert 'id="per-label"' in html and 'id="confusion"' in html and "add-edge-case" in html


def test_workspace_speaks_chinese(client, published, items, annotator):
    client.force_login(annotator)
    client.cookies["django_language"] = "zh-hans"
    html = client.get(url("workspace", published)).content.decode()
    assert "标注工作台" in html and "键盘快捷键" in html
    client.cookies["django_language"] = "en"
    assert "Labeling workspace" in client.get(url("workspace", published)).content.decode()


def test_owner_can_switch_off_model_suggestions(client, published, items, annotator):
    from labeling.services.workspace import set_suggestions

    set_suggestions(published, [(item.pk, "售后", 0.55, []) for item in items], "m7")
    client.force_login(annotator)
    html = client.get(url("workspace", published)).content.decode()
    assert 'id="ws-suggestion"' in html and 'data-suggested="售后"' in html
    published.show_model_suggestion = False
    published.save()
    html = client.get(url("workspace", published)).content.decode()
    assert 'id="ws-suggestion"' not in html and 'data-suggested=""' in html


def test_owner_edits_workspace_settings(client, published, owner, annotator):
    from labeling.selectors.workspace import workspace_settings

    client.force_login(annotator)
    assert client.get(url("workspace_settings", published)).status_code == 403
    client.force_login(owner)
    response = client.post(
        url("workspace_settings", published),
        {"assignment_ttl_minutes": "15", "accept_majority": "on", "agreement_batch_size": "40"},
    )
    assert response.status_code == 302
    saved = workspace_settings(published)
    assert (saved.assignment_ttl_minutes, saved.accept_majority, saved.agreement_batch_size) == (15, True, 40)
    bad = client.post(
        url("workspace_settings", published), {"assignment_ttl_minutes": "0", "agreement_batch_size": "4"}
    )
    assert bad.status_code == 200 and workspace_settings(published).assignment_ttl_minutes == 15
