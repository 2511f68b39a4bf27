"""Gold labels from annotations, adjudication, the review queue and suggestions/priorities for modeling."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from labeling.models import AgreementReport, GoldLabel, ItemSuggestion, ReviewTask, Role
from labeling.selectors.review import adjudication_queue, recheck_queue
from labeling.services.adjudication import adjudicate
from labeling.services.gold import derive_gold_from_annotations
from labeling.services.projects import add_member
from labeling.services.review import create_review_task, recheck_gold, resolve_review_task
from labeling.services.workspace import (
    next_assignment,
    set_suggestions,
    submit_annotation,
    update_workspace_settings,
)
from sceneclf_site.api_errors import ConflictError, ServiceError

pytestmark = pytest.mark.django_db


def label_next(project, user, label):
    assignment = next_assignment(project=project, annotator=user)
    submit_annotation(project=project, annotator=user, item_id=assignment.item_id, label_key=label, time_ms=100)
    return assignment.item


def test_disagreement_goes_to_adjudication_then_gold(published, items, annotator, annotator2, reviewer):
    published.overlap_k = 2
    published.save()
    item = label_next(published, annotator, "支付")
    assert label_next(published, annotator2, "物流").pk == item.pk
    assert not GoldLabel.objects.filter(item=item).exists()
    (entry,) = adjudication_queue(published)
    assert entry.item.pk == item.pk and sorted(entry.labels) == ["支付", "物流"] and entry.suggestion is None
    gold = adjudicate(project=published, item_id=item.pk, label_key="物流", decided_by=reviewer)
    assert (gold.method, gold.label_key, gold.decided_by) == (GoldLabel.Method.ADJUDICATED, "物流", reviewer)
    assert adjudication_queue(published) == []
    with pytest.raises(ConflictError):
        adjudicate(project=published, item_id=item.pk, label_key="支付", decided_by=reviewer)


def test_majority_accepted_automatically_for_k3_when_owner_allows(published, items, annotator, annotator2, owner):
    published.overlap_k = 3
    published.save()
    update_workspace_settings(project=published, accept_majority=True)
    third = get_user_model().objects.create_user("annotator3", password="x")
    add_member(project=published, user=third, role=Role.ANNOTATOR)
    item = label_next(published, annotator, "支付")
    label_next(published, annotator2, "支付")
    label_next(published, third, "账户")
    gold = GoldLabel.objects.get(item=item)
    assert (gold.method, gold.label_key) == (GoldLabel.Method.MAJORITY, "支付")


def test_majority_only_suggested_without_the_setting(published, items, annotator, annotator2):
    published.overlap_k = 3
    published.save()
    third = get_user_model().objects.create_user("annotator3", password="x")
    add_member(project=published, user=third, role=Role.ANNOTATOR)
    item = label_next(published, annotator, "支付")
    label_next(published, annotator2, "支付")
    label_next(published, third, "账户")
    assert not GoldLabel.objects.filter(item=item).exists()
    assert derive_gold_from_annotations(item=item, target_k=3) is None
    assert adjudication_queue(published)[0].suggestion == "支付"


def test_review_task_correct_confirm_out_of_scope(published, items, reviewer):
    abstained = create_review_task(
        project=published,
        item=items[0],
        kind=ReviewTask.Kind.ABSTAINED,
        suggested_label="其他",
        confidence=0.31,
        topk=[{"label": "旅行", "probability": 0.31}, {"label": "支付", "probability": 0.29}],
        neighbours=[{"text": "酒店问题", "label": "旅行", "similarity": 0.8}],
        model_version_ref="v3",
    )
    again = create_review_task(project=published, item=items[0], kind=ReviewTask.Kind.ABSTAINED, confidence=0.2)
    assert again.pk == abstained.pk and ReviewTask.objects.count() == 1
    resolve_review_task(
        project=published,
        task_id=abstained.pk,
        resolved_by=reviewer,
        action="correct",
        label_key="旅行",
        comment="酒店",
    )
    gold = GoldLabel.objects.get(item=items[0])
    assert (gold.label_key, gold.method, gold.decided_by) == ("旅行", GoldLabel.Method.REVIEW, reviewer)
    abstained.refresh_from_db()
    assert (abstained.status, abstained.resolution, abstained.comment) == ("resolved", "corrected", "酒店")
    with pytest.raises(ConflictError):
        resolve_review_task(project=published, task_id=abstained.pk, resolved_by=reviewer, action="confirm")

    low = create_review_task(project=published, item=items[1], kind="low_confidence", suggested_label="支付")
    resolve_review_task(project=published, task_id=low.pk, resolved_by=reviewer, action="confirm")
    assert GoldLabel.objects.get(item=items[1]).label_key == "支付"
    issue = create_review_task(project=published, item=items[2], kind="label_issue", suggested_label="物流")
    resolve_review_task(project=published, task_id=issue.pk, resolved_by=reviewer, action="out_of_scope")
    assert GoldLabel.objects.get(item=items[2]).label_key == "其他"
    with pytest.raises(ServiceError):
        create_review_task(project=published, item=items[3], kind="bogus")
    bad = create_review_task(project=published, item=items[3], kind="conflict")
    with pytest.raises(ServiceError, match="not in taxonomy"):
        resolve_review_task(project=published, task_id=bad.pk, resolved_by=reviewer, action="correct", label_key="x")
    assert not GoldLabel.objects.filter(item=items[3]).exists()


def test_recheck_gold(published, items, reviewer):
    taxonomy = published.taxonomy_versions.get(status="published")
    GoldLabel.objects.create(
        item=items[0], label_key="旧标签", taxonomy=taxonomy, method="imported", needs_recheck=True, recheck_reason="x"
    )
    assert [g.item_id for g in recheck_queue(published)] == [items[0].pk]
    gold = recheck_gold(project=published, item_id=items[0].pk, label_key="售后", decided_by=reviewer)
    assert (gold.label_key, gold.method, gold.needs_recheck) == ("售后", "review", False)


def test_suggestions_are_replaced_and_validated(published, items):
    assert set_suggestions(published, [(items[0].pk, "支付", 0.7, [{"label": "支付", "probability": 0.7}])], "m1") == 1
    set_suggestions(published, [(items[0].pk, "物流", 0.9, [])], "m2")
    suggestion = ItemSuggestion.objects.get(item=items[0])
    assert (suggestion.label_key, suggestion.model_ref) == ("物流", "m2")
    with pytest.raises(ServiceError):
        set_suggestions(published, [(10**9, "物流", 0.9, [])], "m2")


def test_agreement_task_runs_after_a_batch(published, items, annotator, annotator2, django_capture_on_commit_callbacks):
    published.overlap_k = 2
    published.save()
    update_workspace_settings(project=published, agreement_batch_size=4)
    with django_capture_on_commit_callbacks(execute=True):
        label_next(published, annotator, "支付")
        label_next(published, annotator2, "支付")
        label_next(published, annotator, "物流")
    assert not AgreementReport.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        label_next(published, annotator2, "旅行")
    report = AgreementReport.objects.get()
    assert report.annotation_count == 4 and report.n_items == 2
