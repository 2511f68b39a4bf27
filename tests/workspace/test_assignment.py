"""Queue rules: who may get which item, how many times, in which order; expiry; skip and undo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Annotation, Assignment, GoldLabel, Skip
from labeling.selectors.workspace import eligible_item_ids, in_agreement_sample, target_k
from labeling.services.workspace import next_assignment, set_priorities, skip_item, submit_annotation, undo_last
from sceneclf_site.api_errors import ConflictError, ServiceError
from tests.workspace.factories import make_items, numbered_texts

pytestmark = pytest.mark.django_db


def label_next(project, user, label="支付", time_ms=1200):
    assignment = next_assignment(project=project, annotator=user)
    assert assignment is not None
    submit_annotation(project=project, annotator=user, item_id=assignment.item_id, label_key=label, time_ms=time_ms)
    return assignment.item


def test_k1_each_item_goes_to_one_annotator_only(published, items, annotator, annotator2):
    published.agreement_share = 0.0
    published.save()
    first = {label_next(published, annotator).pk for _ in range(6)}
    second = {label_next(published, annotator2).pk for _ in range(6)}
    assert not first & second
    assert next_assignment(project=published, annotator=annotator) is None
    assert GoldLabel.objects.filter(method=GoldLabel.Method.SINGLE).count() == 12


def test_never_an_item_already_labelled_or_skipped(published, items, annotator):
    published.overlap_k = 3
    published.save()
    seen = set()
    for n in range(len(items)):
        assignment = next_assignment(project=published, annotator=annotator)
        assert assignment.item_id not in seen
        seen.add(assignment.item_id)
        if n % 3 == 0:
            skip_item(project=published, annotator=annotator, item_id=assignment.item_id, reason="unclear")
        else:
            submit_annotation(
                project=published, annotator=annotator, item_id=assignment.item_id, label_key="物流", time_ms=10
            )
    assert next_assignment(project=published, annotator=annotator) is None
    assert Skip.objects.count() == 4


def test_same_item_returned_until_done(published, items, annotator):
    a = next_assignment(project=published, annotator=annotator)
    b = next_assignment(project=published, annotator=annotator)
    assert a.pk == b.pk


def test_k2_item_reaches_two_annotators_then_leaves_queue(published, items, annotator, annotator2, owner):
    published.overlap_k = 2
    published.save()
    item = label_next(published, annotator, "支付")
    # The second annotator gets the same top item (the queue order is shared), then it is full.
    assert label_next(published, annotator2, "支付").pk == item.pk
    assert item.pk not in eligible_item_ids(published, owner)
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.method) == ("支付", GoldLabel.Method.UNANIMOUS)


def test_agreement_share_is_deterministic_and_close_to_target(published):
    published.agreement_share = 0.10
    items = make_items(published, numbered_texts(400))
    sample = [in_agreement_sample(published, item.text_hash) for item in items]
    assert sample == [in_agreement_sample(published, item.text_hash) for item in items]
    assert 0.05 < sum(sample) / len(sample) < 0.15
    assert {target_k(published, item.text_hash) for item, s in zip(items, sample, strict=True) if s} == {2}


def test_expired_assignment_frees_the_slot(published, items, annotator, annotator2):
    published.agreement_share = 0.0
    published.save()
    held = next_assignment(project=published, annotator=annotator)
    assert held.item_id not in eligible_item_ids(published, annotator2)
    Assignment.objects.filter(pk=held.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    taken = next_assignment(project=published, annotator=annotator2)
    assert taken.item_id == held.item_id and taken.annotator_id == annotator2.pk and taken.slot == held.slot
    with pytest.raises(ConflictError):
        submit_annotation(project=published, annotator=annotator, item_id=held.item_id, label_key="旅行", time_ms=5)


def test_priority_orders_the_queue(published, items, annotator):
    target = items[7]
    set_priorities(published, {target.pk: 5.0, items[2].pk: 1.0})
    assert eligible_item_ids(published, annotator)[:2] == [target.pk, items[2].pk]
    assert next_assignment(project=published, annotator=annotator).item_id == target.pk
    with pytest.raises(ServiceError):
        set_priorities(published, {999999: 1.0})


def test_unprioritised_order_alternates_sources(published, annotator):
    make_items(published, [f"来源甲的反馈{i}号" for i in range(6)], source="app")
    make_items(published, [f"来源乙的反馈{i}号" for i in range(6)], source="web")
    order = eligible_item_ids(published, annotator)
    sources = [published.items.get(pk=pk).source for pk in order]
    assert all(sources[i] != sources[i + 1] for i in range(len(sources) - 1))


def test_submit_validates_label_and_caps_time(published, items, annotator):
    assignment = next_assignment(project=published, annotator=annotator)
    with pytest.raises(ServiceError, match="not in taxonomy"):
        submit_annotation(project=published, annotator=annotator, item_id=assignment.item_id, label_key="X", time_ms=1)
    annotation = submit_annotation(
        project=published, annotator=annotator, item_id=assignment.item_id, label_key="售后", time_ms=10**9
    ).annotation
    assert annotation.time_ms == 600_000
    assert annotation.taxonomy.is_published


def test_skip_needs_reason(published, items, annotator):
    assignment = next_assignment(project=published, annotator=annotator)
    with pytest.raises(ServiceError, match="why"):
        skip_item(project=published, annotator=annotator, item_id=assignment.item_id, reason="  ")
    assert Assignment.objects.filter(pk=assignment.pk).exists()


def test_undo_annotation_gives_item_back_and_drops_derived_gold(published, items, annotator):
    published.agreement_share = 0.0
    published.save()
    item = label_next(published, annotator, "旅行")
    assert GoldLabel.objects.filter(item=item).exists()
    next_assignment(project=published, annotator=annotator)  # now showing another item
    assert undo_last(project=published, annotator=annotator).pk == item.pk
    assert not Annotation.objects.filter(item=item).exists()
    assert not GoldLabel.objects.filter(item=item).exists()
    assert next_assignment(project=published, annotator=annotator).item_id == item.pk


def test_undo_skip_returns_item(published, items, annotator):
    assignment = next_assignment(project=published, annotator=annotator)
    skip_item(project=published, annotator=annotator, item_id=assignment.item_id, reason="needs context")
    assert undo_last(project=published, annotator=annotator).pk == assignment.item_id
    assert not Skip.objects.exists()
    assert next_assignment(project=published, annotator=annotator).item_id == assignment.item_id


def test_nothing_to_undo(published, annotator):
    with pytest.raises(ServiceError, match="Nothing"):
        undo_last(project=published, annotator=annotator)


def test_no_published_taxonomy_refuses_labels(project, annotator):
    (item,) = make_items(project, ["还没有发布分类"])
    next_assignment(project=project, annotator=annotator)
    with pytest.raises(ServiceError, match="publish"):
        submit_annotation(project=project, annotator=annotator, item_id=item.pk, label_key="其他", time_ms=1)


def test_items_in_the_review_queue_are_not_handed_to_annotators(published, items, annotator):
    from labeling.services.review import create_review_task

    task = create_review_task(project=published, item=items[0], kind="abstained", suggested_label="支付")
    assert items[0].pk not in eligible_item_ids(published, annotator)
    task.status = "resolved"
    task.save()
    assert items[0].pk in eligible_item_ids(published, annotator)
