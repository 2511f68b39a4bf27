"""Reserved workspace keys refused on taxonomy edits, the bulk re-check service, the to-do count and the
label data the keyboard pages render."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import GoldLabel, ItemEvent, Label
from labeling.selectors.workspace import annotator_progress, workspace_labels
from labeling.services.review import bulk_recheck_gold
from labeling.services.taxonomy import add_label, get_or_create_draft, import_taxonomy, publish_draft, update_label
from labeling.services.workspace import next_assignment
from sceneclf_site.api_errors import NotFoundError, ServiceError
from tests.workspace.factories import make_items

pytestmark = pytest.mark.django_db


# --- Reserved hotkeys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["s", "u", "S", "?", "/", "e"])
def test_reserved_hotkey_is_refused_with_the_reason(project, key):
    draft = get_or_create_draft(project=project)
    with pytest.raises(ServiceError) as exc:
        add_label(draft=draft, data={"key": "旅行", "name": "旅行", "hotkey": key})
    assert exc.value.code == "reserved_hotkey"
    assert "reserved" in exc.value.message and "hotkey" in exc.value.details["fields"]
    assert not draft.labels.filter(key="旅行").exists()


def test_update_refuses_a_reserved_hotkey_but_other_edits_of_an_old_label_pass(project):
    draft = get_or_create_draft(project=project)
    add_label(draft=draft, data={"key": "旅行", "name": "旅行", "hotkey": "t"})
    with pytest.raises(ServiceError, match="skip"):
        update_label(draft=draft, key="旅行", data={"hotkey": "s"})
    Label.objects.filter(taxonomy=draft, key="旅行").update(hotkey="u")  # saved before the rule existed
    label = update_label(draft=draft, key="旅行", data={"edge_cases": ["酒店退订"]})
    assert (label.hotkey, label.edge_cases) == ("u", ["酒店退订"])


def test_import_refuses_a_reserved_hotkey(project):
    labels = [{"key": "旅行", "name": "旅行", "hotkey": "u"}, {"key": "其他", "name": "其他", "is_fallback": True}]
    text = json.dumps({"labels": labels})
    with pytest.raises(ServiceError, match="undo"):
        import_taxonomy(project=project, text=text, fmt="json")


def test_form_shows_the_reason_on_the_hotkey_field(client, project, owner):
    get_or_create_draft(project=project)
    client.force_login(owner)
    response = client.post(
        reverse("labeling:taxonomy_label_create", args=[project.slug]), {"key": "旅行", "name": "旅行", "hotkey": "s"}
    )
    assert response.status_code == 200
    field_errors = response.context["form"].errors["hotkey"]
    assert any("reserved" in error and "skip" in error for error in field_errors)


def test_api_error_names_the_hotkey_field(project, owner):
    get_or_create_draft(project=project)
    api = APIClient()
    api.force_authenticate(owner)
    r = api.post(
        f"/api/v1/projects/{project.slug}/taxonomy/draft/labels",
        {"key": "旅行", "name": "旅行", "hotkey": "s"},
        format="json",
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "reserved_hotkey" and "skip" in error["details"]["fields"]["hotkey"][0]


def test_workspace_labels_give_the_fallback_0_and_carry_examples(published):
    taxonomy = published.taxonomy_versions.get(status="published")
    labels = {label.key: label for label in workspace_labels(taxonomy)}
    assert labels["其他"].hotkey == "0"
    assert labels["旅行"].search_text.startswith("旅行 旅行 travel")
    assert all(label.hotkey not in {"s", "u", "e", "/", "?"} for label in labels.values())


# --- To-do count -----------------------------------------------------------------------------------------


def test_item_on_screen_counts_as_to_do(published, items, annotator):
    before = annotator_progress(published, annotator).remaining
    assert next_assignment(project=published, annotator=annotator) is not None
    assert annotator_progress(published, annotator).remaining == before == len(items)


# --- Bulk re-check ---------------------------------------------------------------------------------------


def _needs_recheck(published, items):
    taxonomy = published.taxonomy_versions.get(status="published")
    for i, item in enumerate(items):
        GoldLabel.objects.create(
            item=item,
            label_key="旧标签",
            taxonomy=taxonomy,
            method="imported",
            needs_recheck=True,
            recheck_reason=f"Removed in taxonomy v2 ({i})",
        )


def test_bulk_recheck_moves_all_and_records_each_history(published, items, reviewer):
    _needs_recheck(published, items[:3])
    golds = bulk_recheck_gold(
        project=published, item_ids=[items[0].pk, items[2].pk], label_key="售后", decided_by=reviewer
    )
    assert sorted(g.item_id for g in golds) == sorted([items[0].pk, items[2].pk])
    for item in (items[0], items[2]):
        gold = GoldLabel.objects.get(item=item)
        assert (gold.label_key, gold.method, gold.needs_recheck, gold.decided_by_id) == (
            "售后",
            "review",
            False,
            reviewer.pk,
        )
        event = ItemEvent.objects.get(item=item, kind=ItemEvent.Kind.RECHECKED)
        assert (event.label_before, event.label_after, event.actor_id) == ("旧标签", "售后", reviewer.pk)
        assert event.detail["recheck_reason"].startswith("Removed in taxonomy v2") and event.detail["bulk"] == 2
    assert GoldLabel.objects.get(item=items[1]).needs_recheck


def test_bulk_recheck_is_all_or_nothing(published, items, reviewer):
    _needs_recheck(published, items[:2])
    with pytest.raises(NotFoundError) as exc:
        bulk_recheck_gold(project=published, item_ids=[items[0].pk, items[5].pk], label_key="售后", decided_by=reviewer)
    assert exc.value.details == {"item_ids": [items[5].pk]}
    assert GoldLabel.objects.get(item=items[0]).needs_recheck
    assert not ItemEvent.objects.filter(kind=ItemEvent.Kind.RECHECKED).exists()
    with pytest.raises(ServiceError):
        bulk_recheck_gold(project=published, item_ids=[items[0].pk], label_key="不存在", decided_by=reviewer)
    with pytest.raises(ServiceError):
        bulk_recheck_gold(project=published, item_ids=[], label_key="售后", decided_by=reviewer)
    assert GoldLabel.objects.get(item=items[0]).needs_recheck


def test_bulk_recheck_page_posts_selected_items(client, published, items, reviewer):
    _needs_recheck(published, items[:3])
    client.force_login(reviewer)
    response = client.post(
        reverse("labeling:recheck_bulk", args=[published.slug]),
        {"item_id": [items[0].pk, items[1].pk], "label": "物流"},
    )
    assert response.status_code == 302
    assert set(GoldLabel.objects.filter(label_key="物流").values_list("item_id", flat=True)) == {
        items[0].pk,
        items[1].pk,
    }


def test_label_button_alone_corrects_a_review_task(client, published, items, reviewer):
    from labeling.services.review import create_review_task

    task = create_review_task(project=published, item=items[0], kind="abstained", suggested_label="其他")
    client.force_login(reviewer)
    response = client.post(reverse("labeling:review_task", args=[published.slug, task.pk]), {"label": "旅行"})
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.resolution, task.resolved_label) == ("corrected", "旅行")


def test_workspace_says_when_an_older_reserved_key_is_replaced(client, project, annotator):
    draft = get_or_create_draft(project=project)
    add_label(draft=draft, data={"key": "售后", "name": "售后", "hotkey": "t"})
    Label.objects.filter(taxonomy=draft, key="售后").update(hotkey="s")  # saved before the rule existed
    publish_draft(draft=draft)
    make_items(project, ["买的耳机坏了想退货"])
    client.force_login(annotator)
    html = client.get(reverse("labeling:workspace", args=[project.slug])).content.decode()
    assert "its key s is reserved here, press 1 instead" in html
    assert 'data-key="售后" data-hotkey="1"' in html
