"""Check items mixed into the queue at the stated rate, scored per annotator; the statistics page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from labeling.models import Annotation, Assignment, CheckItem, GoldLabel, Skip
from labeling.selectors.annotators import annotator_stats
from labeling.services.assignment import claim_next
from labeling.services.check_items import claim_check_item, mark_check_items
from labeling.services.workspace import submit_annotation, undo_last, update_workspace_settings
from sceneclf_site.api_errors import ServiceError
from tests.workspace.factories import make_items, numbered_texts


def gold_items(project, count: int, label: str = "支付"):
    taxonomy = project.taxonomy_versions.get(status="published")
    items = make_items(project, [f"金标检查条目{i}号" for i in range(count)], source="gold")
    for item in items:
        GoldLabel.objects.create(item=item, label_key=label, taxonomy=taxonomy, method=GoldLabel.Method.ADJUDICATED)
    return items


def test_only_settled_gold_items_can_be_check_items(published, owner):
    plain = make_items(published, ["还没有金标的条目"])
    checks = gold_items(published, 2)
    with pytest.raises(ServiceError, match="settled gold label"):
        mark_check_items(project=published, item_ids=[plain[0].pk, checks[0].pk], actor=owner)
    assert mark_check_items(project=published, item_ids=[c.pk for c in checks], actor=owner)
    assert mark_check_items(project=published, item_ids=[checks[0].pk], actor=owner) == []  # already marked
    assert CheckItem.objects.filter(project=published).count() == 2


def work_through(project, annotator, label="物流", limit=200):
    seen = []
    while (assignment := claim_next(project, annotator)) is not None and len(seen) < limit:
        seen.append(assignment.item_id)
        submit_annotation(
            project=project, annotator=annotator, item_id=assignment.item_id, label_key=label, time_ms=2000
        )
    return seen


def test_check_items_are_mixed_in_at_the_rate_and_scored(published, owner, annotator):
    make_items(published, numbered_texts(60))
    checks = gold_items(published, 30)
    mark_check_items(project=published, item_ids=[c.pk for c in checks], actor=owner)
    update_workspace_settings(project=published, check_item_rate=0.2)

    seen = work_through(published, annotator)
    check_ids = {c.pk for c in checks}
    served = [item_id for item_id in seen if item_id in check_ids]
    assert len(seen) - len(served) == 60  # every real item, then the queue ends: no check items alone
    assert 6 <= len(served) <= 24  # 20 % of about 75 pulls, a stable draw
    assert len(set(served)) == len(served)  # never the same check item twice
    assert set(GoldLabel.objects.filter(item_id__in=served).values_list("label_key", flat=True)) == {"支付"}

    row = next(s for s in annotator_stats(published) if s.username == "annotator")
    assert (row.check_items.hits, row.check_items.total) == (0, len(served))  # labelled 物流, gold is 支付
    assert row.annotations == len(seen)
    assert row.items_per_hour == pytest.approx(1800.0)  # 2 s an item


def test_no_check_items_at_rate_zero(published, owner, annotator):
    make_items(published, numbered_texts(20))
    checks = gold_items(published, 10)
    mark_check_items(project=published, item_ids=[c.pk for c in checks], actor=owner)
    update_workspace_settings(project=published, check_item_rate=0)
    assert not set(work_through(published, annotator)) & {c.pk for c in checks}
    with pytest.raises(ServiceError):
        update_workspace_settings(project=published, check_item_rate=0.9)


def test_undoing_a_check_item_label_keeps_its_gold(published, owner, annotator):
    make_items(published, numbered_texts(3))
    (check,) = gold_items(published, 1)
    mark_check_items(project=published, item_ids=[check.pk], actor=owner)
    assignment = claim_check_item(published, annotator)
    assert assignment.item_id == check.pk
    submit_annotation(project=published, annotator=annotator, item_id=check.pk, label_key="物流", time_ms=900)
    assert claim_check_item(published, annotator) is None  # seen already
    undo_last(project=published, annotator=annotator)
    assert GoldLabel.objects.get(item=check).label_key == "支付"
    assert not Annotation.objects.filter(item=check).exists()
    assert Assignment.objects.get(item=check, annotator=annotator).status == Assignment.Status.ACTIVE


def test_agreement_with_gold_and_others_and_skips(published, annotator, annotator2):
    taxonomy = published.taxonomy_versions.get(status="published")
    items = make_items(published, numbered_texts(4))
    labels = [("支付", "支付"), ("支付", "物流"), ("旅行", "旅行"), ("物流", "支付")]
    for item, (a, b) in zip(items, labels, strict=True):
        Annotation.objects.create(item=item, annotator=annotator, label_key=a, taxonomy=taxonomy, time_ms=1000)
        Annotation.objects.create(item=item, annotator=annotator2, label_key=b, taxonomy=taxonomy, time_ms=3000)
    GoldLabel.objects.create(item=items[1], label_key="支付", taxonomy=taxonomy, method=GoldLabel.Method.ADJUDICATED)
    GoldLabel.objects.create(item=items[2], label_key="旅行", taxonomy=taxonomy, method=GoldLabel.Method.UNANIMOUS)
    extra = make_items(published, ["被跳过的条目"])[0]
    Skip.objects.create(item=extra, annotator=annotator2, reason="unclear")

    rows = {row.username: row for row in annotator_stats(published)}
    first, second = rows["annotator"], rows["annotator2"]
    assert (first.with_gold.hits, first.with_gold.total) == (2, 2)
    assert (second.with_gold.hits, second.with_gold.total) == (1, 2)
    assert (first.with_others.hits, first.with_others.total) == (2, 4)
    assert (first.skips, second.skips) == (0, 1)
    assert first.items_per_hour == pytest.approx(3600.0) and second.items_per_hour == pytest.approx(1200.0)


def test_page_for_reviewers_and_owners_only(published, owner, reviewer, annotator):
    checks = gold_items(published, 3)
    url = reverse("labeling:annotators", args=[published.slug])
    client = Client()
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    client.force_login(reviewer)
    page = client.get(url).content.decode()
    assert 'id="annotator-stats"' in page and 'id="check-candidates"' not in page

    client.force_login(owner)
    assert 'id="check-candidates"' in client.get(url).content.decode()
    action = reverse("labeling:check_items_action", args=[published.slug])
    client.post(action, {"action": "mark", "item_id": [checks[0].pk, checks[1].pk]})
    assert CheckItem.objects.filter(project=published).count() == 2
    client.post(action, {"action": "unmark", "item_id": [checks[1].pk]})
    assert list(CheckItem.objects.values_list("item_id", flat=True)) == [checks[0].pk]
    client.post(reverse("labeling:check_item_rate", args=[published.slug]), {"rate_percent": "12.5"})
    assert published.workspace_settings.check_item_rate == pytest.approx(0.125)
