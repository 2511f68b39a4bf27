"""Gold labels keep their provenance: a review never silently replaces gold, every change is in the item's
history, and gold gets a split when it is made that never moves afterwards."""

from __future__ import annotations

from collections import Counter

import pytest
from rest_framework.test import APIClient

from labeling.models import GoldConflict, GoldLabel, Item, ItemEvent, ReviewTask
from labeling.selectors.history import gold_provenance
from labeling.selectors.review import adjudication_queue
from labeling.services.adjudication import adjudicate
from labeling.services.review import create_review_task, recheck_gold, resolve_review_task
from labeling.services.splits import assign_splits
from labeling.services.workspace import next_assignment, submit_annotation, undo_last
from sceneclf_site.api_errors import ServiceError
from tests.workspace.factories import make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_annotation_makes_gold(published):
    published.agreement_share = 0.0  # no item needs a second annotator here
    published.save()


def label_next(project, user, label):
    assignment = next_assignment(project=project, annotator=user)
    submit_annotation(project=project, annotator=user, item_id=assignment.item_id, label_key=label, time_ms=100)
    return Item.objects.get(pk=assignment.item_id)


def kinds(item):
    return list(ItemEvent.objects.filter(item=item).order_by("id").values_list("kind", flat=True))


def abstained_task(project, item, suggested="其他"):
    return create_review_task(
        project=project,
        item=item,
        kind=ReviewTask.Kind.ABSTAINED,
        suggested_label=suggested,
        confidence=0.3,
        topk=[{"label": suggested, "probability": 0.3}],
    )


def test_review_that_differs_from_gold_goes_to_adjudication_not_over_gold(published, items, annotator, reviewer):
    item = label_next(published, annotator, "旅行")  # gold by the annotator (single)
    task = abstained_task(published, item)
    outcome = resolve_review_task(
        project=published, task_id=task.pk, resolved_by=reviewer, action="out_of_scope", comment="不像旅行"
    )
    assert outcome.outcome == "sent_to_adjudication"
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.method, gold.decided_by) == ("旅行", GoldLabel.Method.SINGLE, None)
    task.refresh_from_db()
    assert (task.status, task.resolution, task.resolved_label) == ("resolved", "adjudication", "其他")
    conflict = GoldConflict.objects.get(item=item)
    assert (conflict.gold_label, conflict.proposed_label, conflict.proposed_by, conflict.status) == (
        "旅行",
        "其他",
        reviewer,
        "open",
    )

    (entry,) = adjudication_queue(published)
    assert entry.item.pk == item.pk and entry.gold.label_key == "旅行" and entry.conflicts == [conflict]
    gold = adjudicate(project=published, item_id=item.pk, label_key="其他", decided_by=reviewer, reason="投诉客服")
    assert (gold.label_key, gold.method) == ("其他", GoldLabel.Method.ADJUDICATED)
    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolved_label, conflict.resolved_by) == ("resolved", "其他", reviewer)
    assert adjudication_queue(published) == []
    last = ItemEvent.objects.filter(item=item).order_by("-id").first()
    assert (last.kind, last.label_before, last.label_after, last.reason) == ("adjudicated", "旅行", "其他", "投诉客服")
    assert "review_conflict" in kinds(item)


def test_adjudication_may_keep_the_existing_gold(published, items, annotator, reviewer):
    item = label_next(published, annotator, "账户")
    task = abstained_task(published, item, suggested="其他")
    resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    gold = adjudicate(project=published, item_id=item.pk, label_key="账户", decided_by=reviewer)
    assert gold.label_key == "账户" and not GoldConflict.objects.filter(status="open").exists()
    event = ItemEvent.objects.filter(item=item, kind="adjudicated").get()
    assert event.detail["gold_changed"] is False


def test_override_needs_a_reason_and_is_kept(published, items, annotator, reviewer):
    item = label_next(published, annotator, "旅行")
    task = abstained_task(published, item)
    with pytest.raises(ServiceError, match="why"):
        resolve_review_task(
            project=published, task_id=task.pk, resolved_by=reviewer, action="out_of_scope", override=True
        )
    assert GoldLabel.objects.get(item=item).label_key == "旅行"
    outcome = resolve_review_task(
        project=published,
        task_id=task.pk,
        resolved_by=reviewer,
        action="out_of_scope",
        override=True,
        reason="客服态度，不是旅行",
    )
    assert outcome.outcome == "overridden"
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.method, gold.decided_by) == ("其他", GoldLabel.Method.REVIEW, reviewer)
    event = ItemEvent.objects.get(item=item, kind="overridden")
    assert (event.label_before, event.label_after, event.reason, event.actor) == (
        "旅行",
        "其他",
        "客服态度，不是旅行",
        reviewer,
    )
    assert event.detail["method_before"] == "single" and event.detail["review_task"] == task.pk
    assert not GoldConflict.objects.exists()


def test_review_agreeing_with_gold_keeps_its_provenance(published, items, annotator, reviewer):
    item = label_next(published, annotator, "支付")
    task = create_review_task(project=published, item=item, kind="label_issue", suggested_label="支付")
    outcome = resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    assert outcome.outcome == "gold_confirmed"
    gold = GoldLabel.objects.get(item=item)
    assert (gold.method, gold.decided_by) == (GoldLabel.Method.SINGLE, None)
    provenance = gold_provenance(item)
    assert provenance.annotators == [("annotator", "支付")] and provenance.by == "annotator"


def test_review_settles_a_gold_label_waiting_for_recheck(published, items, annotator, reviewer):
    item = label_next(published, annotator, "支付")
    GoldLabel.objects.filter(item=item).update(needs_recheck=True, recheck_reason="Label removed in taxonomy v2.")
    task = abstained_task(published, item, suggested="物流")
    outcome = resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    assert outcome.outcome == "rechecked"
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.needs_recheck) == ("物流", False)
    assert ItemEvent.objects.get(item=item, kind="rechecked").detail["recheck_reason"].startswith("Label removed")


def test_history_keeps_annotations_gold_undo_review_and_recheck(published, items, annotator, reviewer):
    item = label_next(published, annotator, "物流")
    undo_last(project=published, annotator=annotator)
    assert not GoldLabel.objects.filter(item=item).exists()
    again = label_next(published, annotator, "售后")
    assert again.pk == item.pk
    task = create_review_task(project=published, item=item, kind="label_issue", suggested_label="物流")
    resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    adjudicate(project=published, item_id=item.pk, label_key="物流", decided_by=reviewer)
    GoldLabel.objects.filter(item=item).update(needs_recheck=True, recheck_reason="split")
    recheck_gold(project=published, item_id=item.pk, label_key="售后", decided_by=reviewer)
    assert kinds(item) == [
        "annotated",
        "gold_derived",
        "split_assigned",
        "annotation_undone",
        "gold_removed",
        "annotated",
        "gold_derived",
        "review_conflict",
        "adjudicated",
        "rechecked",
    ]
    events = list(ItemEvent.objects.filter(item=item).order_by("id"))
    assert [(e.label_before, e.label_after) for e in events if e.kind in {"adjudicated", "rechecked"}] == [
        ("售后", "物流"),
        ("物流", "售后"),
    ]
    assert events[0].actor == annotator and events[-1].actor == reviewer
    assert all(e.created_at for e in events)


def test_imported_gold_is_in_the_history_with_who_imported_it(published, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from labeling.services.imports import run_import, start_import

    data = '{"text": "机票退改签太麻烦", "label": "旅行"}\n{"text": "未标注的一条"}\n'.encode()
    job = start_import(
        project=published,
        content=SimpleUploadedFile("a.jsonl", data),
        file_name="a.jsonl",
        created_by=owner,
        enqueue=False,
    )
    run_import(job.pk)
    item = Item.objects.get(text="机票退改签太麻烦")
    event = ItemEvent.objects.get(item=item, kind="imported")
    assert (event.actor, event.label_after, event.detail["import_job"]) == (owner, "旅行", job.pk)
    assert item.split in {"train", "val", "test"}
    assert gold_provenance(item).decided_by == "owner"
    assert Item.objects.get(text="未标注的一条").split == ""


# --- splits -----------------------------------------------------------------------------------------


def test_gold_from_the_workspace_and_from_review_gets_a_split(published, items, annotator, reviewer):
    labelled = label_next(published, annotator, "旅行")
    assert labelled.split in {"train", "val", "test"}
    task = abstained_task(published, items[-1], suggested="物流")
    resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    assert Item.objects.get(pk=items[-1].pk).split in {"train", "val", "test"}
    assert not Item.objects.filter(gold__isnull=False, split="").exists()


def test_review_gold_is_split_stratified_per_label(published, reviewer):
    texts = [f"反馈{chr(0x4E00 + 7 * i)}{chr(0x5E00 + 13 * i)}" for i in range(60)]  # no two near-duplicates
    pool = make_items(published, texts)
    for index, item in enumerate(pool):
        label = "支付" if index % 2 else "物流"
        task = abstained_task(published, item, suggested=label)
        resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    for label in ("支付", "物流"):
        counts = Counter(Item.objects.filter(gold__label_key=label).values_list("split", flat=True))
        assert counts == {"train": 21, "val": 5, "test": 4} or counts == {"train": 21, "val": 4, "test": 5}, counts


def test_near_duplicate_lands_on_the_side_of_its_twin(published, reviewer, annotator):
    first, twin = make_items(published, ["订单123还没到!!", "订单 456 还没到"])
    assert first.group_key == twin.group_key
    Item.objects.filter(pk=first.pk).update(split="test")
    task = abstained_task(published, twin, suggested="物流")
    resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="confirm")
    assert Item.objects.get(pk=twin.pk).split == "test"
    assert ItemEvent.objects.get(item=twin, kind="split_assigned").detail == {"split": "test", "by": "near_duplicate"}


def test_a_split_once_assigned_never_moves(published, items, annotator, reviewer, owner):
    labelled = [label_next(published, annotator, label) for label in ["旅行", "支付", "物流", "售后", "账户"] * 2]
    before = dict(Item.objects.filter(gold__isnull=False).values_list("id", "split"))
    assert len(before) == 10 and all(before.values())
    assign_splits(project=published, train=0.2, val=0.4, test=0.4, seed=9, actor=owner)
    undo_last(project=published, annotator=annotator)  # gold taken back, the split stays with the item
    assert Item.objects.get(pk=labelled[-1].pk).split == before[labelled[-1].pk]
    label_next(published, annotator, "支付")
    task = create_review_task(project=published, item=labelled[0], kind="label_issue", suggested_label="其他")
    resolve_review_task(
        project=published, task_id=task.pk, resolved_by=reviewer, action="confirm", override=True, reason="r"
    )
    after = dict(Item.objects.filter(pk__in=before).values_list("id", "split"))
    assert after == before


# --- API and pages ----------------------------------------------------------------------------------


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_review_api_returns_the_existing_gold_and_takes_an_override(published, items, annotator, reviewer):
    base = f"/api/v1/projects/{published.slug}"
    item = label_next(published, annotator, "旅行")
    task = abstained_task(published, item)
    (row,) = api(reviewer).get(f"{base}/review-tasks").json()
    assert row["gold"]["label"] == "旅行" and row["gold"]["method"] == "single"
    assert row["gold"]["annotators"] == [{"username": "annotator", "label": "旅行"}]

    url = f"{base}/review-tasks/{task.pk}/resolve"
    missing = api(reviewer).post(url, {"action": "out_of_scope", "override": True}, format="json")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "override_reason"
    body = api(reviewer).post(url, {"action": "out_of_scope"}, format="json").json()
    assert (body["outcome"], body["resolution"], body["gold"]["label"]) == (
        "sent_to_adjudication",
        "adjudication",
        "旅行",
    )
    (entry,) = api(reviewer).get(f"{base}/adjudication").json()
    assert entry["gold"]["label"] == "旅行" and entry["conflicts"][0]["proposed_label"] == "其他"
    assert entry["conflicts"][0]["id"] == body["conflict_id"]

    other = abstained_task(published, item, suggested="支付")
    done = (
        api(reviewer)
        .post(
            f"{base}/review-tasks/{other.pk}/resolve",
            {"action": "confirm", "override": True, "reason": "付款问题"},
            format="json",
        )
        .json()
    )
    assert (done["outcome"], done["gold"]["label"], done["gold"]["method"], done["gold"]["decided_by"]) == (
        "overridden",
        "支付",
        "review",
        "reviewer",
    )


def test_review_page_shows_gold_and_sends_a_conflict_to_adjudication(client, published, items, annotator, reviewer):
    item = label_next(published, annotator, "旅行")
    task = abstained_task(published, item)
    client.force_login(reviewer)
    queue = client.get(f"/projects/{published.slug}/review/").content.decode()
    assert 'data-gold-label="旅行"' in queue
    page = client.get(f"/projects/{published.slug}/review/{task.pk}/").content.decode()
    assert 'id="review-gold"' in page and 'data-gold-label="旅行"' in page and "by annotator" in page
    assert f"/projects/{published.slug}/items/{item.pk}/" in page and 'name="override"' in page
    response = client.post(f"/projects/{published.slug}/review/{task.pk}/", {"action": "out_of_scope"}, follow=True)
    assert "went to adjudication" in response.content.decode()
    assert GoldLabel.objects.get(item=item).label_key == "旅行"
    adjudication = client.get(f"/projects/{published.slug}/adjudication/").content.decode()
    assert f'id="adj-{item.pk}"' in adjudication and 'data-gold-label="旅行"' in adjudication


def test_item_page_shows_gold_annotations_and_history(client, published, items, annotator, reviewer, owner):
    item = label_next(published, annotator, "旅行")
    task = abstained_task(published, item)
    resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="out_of_scope", comment="c1")
    client.force_login(reviewer)
    page = client.get(f"/projects/{published.slug}/items/{item.pk}/").content.decode()
    assert item.text in page and 'id="item-split"' in page and item.split in page
    assert 'data-gold-method="single"' in page and 'id="item-conflicts"' in page
    for kind in ("annotated", "gold_derived", "split_assigned", "review_conflict"):
        assert f'data-kind="{kind}"' in page
    assert "c1" in page
    client.force_login(annotator)
    assert client.get(f"/projects/{published.slug}/items/{item.pk}/").status_code == 403
    client.force_login(owner)
    assert client.get(f"/projects/{published.slug}/items/999999/").status_code == 404
    listing = client.get(f"/projects/{published.slug}/items/").content.decode()
    assert f'href="/projects/{published.slug}/items/{item.pk}/"' in listing


def test_training_form_counts_gold_per_split(client, published, items, annotator, owner):
    for label in ["旅行", "支付", "物流"]:
        label_next(published, annotator, label)
    legacy = items[-1]
    taxonomy = published.taxonomy_versions.get(status="published")
    GoldLabel.objects.create(item=legacy, label_key="售后", taxonomy=taxonomy, method="imported")
    client.force_login(owner)
    page = client.get(f"/projects/{published.slug}/models/").content.decode()
    counts = Counter(Item.objects.filter(gold__isnull=False).exclude(split="").values_list("split", flat=True))
    assert f"train {counts['train']}" in page and f"val {counts['val']}" in page and f"test {counts['test']}" in page
    assert 'id="train-unassigned"' in page and "1 gold label has no split" in page


def test_the_new_pages_speak_chinese(client, settings, published, items, annotator, reviewer):
    item = label_next(published, annotator, "旅行")
    task = abstained_task(published, item)
    client.force_login(reviewer)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    page = client.get(f"/projects/{published.slug}/review/{task.pk}/").content.decode()
    assert "当前金标" in page and "覆盖金标" in page and "条目历史" in page
    history = client.get(f"/projects/{published.slug}/items/{item.pk}/").content.decode()
    assert "历史" in history and "由标注得出金标" in history and "由 annotator" in history


def test_abstained_production_text_matching_a_gold_item_does_not_overwrite_it(published, annotator, reviewer):
    from feedback.services.review_queue import queue_abstained
    from modeling.services.serving import ServedPrediction

    (item,) = make_items(published, ["客服电话一直打不通"])
    label_next(published, annotator, "其他")
    prediction = ServedPrediction(
        label="其他", confidence=0.31, topk=[{"label": "账户", "probability": 0.31}], abstained=True, neighbours=[]
    )
    assert queue_abstained(published, "v3", [("客服电话一直打不通 ", prediction)]) == 1
    task = ReviewTask.objects.get(item=item)
    outcome = resolve_review_task(
        project=published, task_id=task.pk, resolved_by=reviewer, action="correct", label_key="账户"
    )
    assert outcome.outcome == "sent_to_adjudication"
    assert GoldLabel.objects.get(item=item).label_key == "其他"
    assert GoldConflict.objects.get(item=item).proposed_label == "账户"


def test_item_history_api(published, items, annotator, reviewer):
    item = label_next(published, annotator, "旅行")
    task = abstained_task(published, item)
    resolve_review_task(project=published, task_id=task.pk, resolved_by=reviewer, action="out_of_scope")
    url = f"/api/v1/projects/{published.slug}/items/{item.pk}/history"
    body = api(reviewer).get(url).json()
    assert body["item"]["split"] == Item.objects.get(pk=item.pk).split != ""
    assert body["gold"]["label"] == "旅行" and body["open_conflicts"][0]["proposed_by"] == "reviewer"
    assert [a["annotator"] for a in body["annotations"]] == ["annotator"]
    assert [e["kind"] for e in body["history"]] == ["annotated", "gold_derived", "split_assigned", "review_conflict"]
    assert body["history"][-1]["actor"] == "reviewer"
    assert api(annotator).get(url).status_code == 403
    missing = api(reviewer).get(f"/api/v1/projects/{published.slug}/items/999999/history")
    assert missing.status_code == 404
