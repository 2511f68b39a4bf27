"""The item browser: filters and sorts computed in the database, saved views per person, bulk actions that
follow the split and gold rules, role checks and the confirmation step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Annotation, GoldLabel, Item, ItemEvent, ReviewTask, SavedView
from labeling.selectors.browser import browse_items, parse_browser_query
from labeling.services import browser as browser_services
from labeling.services.gold import set_gold
from labeling.services.predictions import IssueRow, PredictionRow, record_item_predictions, set_label_issue_scores
from labeling.services.review import resolve_review_task
from sceneclf_site.api_errors import ServiceError
from tests.workspace.factories import make_items, numbered_texts, publish_scenes

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenes(project):
    return publish_scenes(project)


def _predict(project, item, label, top, second, ref="alpha@v1"):
    record_item_predictions(
        project=project,
        model_ref=ref,
        rows=[
            PredictionRow(
                item.pk, label, top, [{"label": label, "probability": top}, {"label": "其他", "probability": second}]
            )
        ],
    )


def _browse(project, **params):
    return list(browse_items(project, parse_browser_query(params)))


def test_sort_by_margin_and_filter_by_confidence(project, scenes):
    a, b, c = make_items(project, numbered_texts(3))
    _predict(project, a, "支付", 0.9, 0.05)  # margin 0.85
    _predict(project, b, "物流", 0.5, 0.45)  # margin 0.05
    _predict(project, c, "旅行", 0.7, 0.2)  # margin 0.5
    assert [i.pk for i in _browse(project, model="alpha@v1", sort="margin")] == [b.pk, c.pk, a.pk]
    assert [i.pk for i in _browse(project, model="alpha@v1", sort="-confidence")] == [a.pk, c.pk, b.pk]
    assert {i.pk for i in _browse(project, model="alpha@v1", conf_min="0.6", conf_max="0.8")} == {c.pk}
    assert {i.pk for i in _browse(project, model="alpha@v1", margin_max="0.1")} == {b.pk}
    assert {i.pk for i in _browse(project, model="alpha@v1", pred="支付")} == {a.pk}
    # Another version's predictions do not leak into this one's columns.
    _predict(project, a, "物流", 0.3, 0.29, ref="alpha@v2")
    row = next(i for i in _browse(project, model="alpha@v1") if i.pk == a.pk)
    assert (row.pred_label, round(row.pred_margin, 2)) == ("支付", 0.85)


def test_disagreement_counts_distinct_labels_beyond_the_first(project, scenes, annotator, reviewer, owner):
    agreed, split_vote, unlabelled = make_items(project, numbered_texts(3))
    for user, item, label in [
        (annotator, agreed, "支付"),
        (reviewer, agreed, "支付"),
        (annotator, split_vote, "支付"),
        (reviewer, split_vote, "物流"),
        (owner, split_vote, "旅行"),
    ]:
        Annotation.objects.create(item=item, annotator=user, label_key=label, taxonomy=scenes, time_ms=500)
    rows = {i.pk: i for i in _browse(project, sort="-disagreement")}
    assert (rows[split_vote.pk].disagreement, rows[split_vote.pk].n_annotations) == (2, 3)
    assert (rows[agreed.pk].disagreement, rows[unlabelled.pk].disagreement) == (0, 0)
    assert [i.pk for i in _browse(project, disagree="1")] == [split_vote.pk]
    assert _browse(project, sort="-disagreement")[0].pk == split_vote.pk


def test_label_issue_score_applies_only_to_the_gold_label_it_scored(project, scenes, owner):
    a, b = make_items(project, numbered_texts(2))
    for item in (a, b):
        set_gold(item=item, label_key="支付", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    set_label_issue_scores(
        project=project,
        model_ref="label-check:test",
        rows=[IssueRow(a.pk, "支付", 0.92, "物流", True), IssueRow(b.pk, "支付", 0.4, "物流", False)],
    )
    assert [i.pk for i in _browse(project, issue_min="0.5")] == [a.pk]
    assert _browse(project, sort="-issue")[0].pk == a.pk
    set_gold(item=a, label_key="物流", taxonomy=scenes, method=GoldLabel.Method.REVIEW, decided_by=owner)
    assert _browse(project, issue_min="0.5") == []  # the score was about 支付, which is no longer the gold label


def test_filters_by_label_split_source_gold_and_date(project, scenes):
    web = make_items(project, numbered_texts(2), source="web")
    app = make_items(project, ["应用里付款失败了"], source="app")
    set_gold(item=web[0], label_key="支付", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    Item.objects.filter(pk=app[0].pk).update(created_at=timezone.now() - timedelta(days=10))
    web[0].refresh_from_db()
    assert {i.pk for i in _browse(project, source="app")} == {app[0].pk}
    assert {i.pk for i in _browse(project, gold="yes")} == {web[0].pk}
    assert {i.pk for i in _browse(project, label="支付")} == {web[0].pk}
    assert {i.pk for i in _browse(project, split=web[0].split)} == {web[0].pk}
    assert {i.pk for i in _browse(project, split="unassigned", gold="no")} == {web[1].pk, app[0].pk}
    # Dates are the site's local days (TIME_ZONE), as the date inputs show them.
    old_day = timezone.localtime(timezone.now() - timedelta(days=10)).date().isoformat()
    assert {i.pk for i in _browse(project, date_to=old_day)} == {app[0].pk}
    assert app[0].pk not in {i.pk for i in _browse(project, date_from=timezone.localdate().isoformat())}


def test_unreadable_filters_are_clear_errors():
    with pytest.raises(ServiceError, match="must be a number"):
        parse_browser_query({"conf_min": "high"})
    with pytest.raises(ServiceError, match="YYYY-MM-DD"):
        parse_browser_query({"date_from": "yesterday"})
    assert parse_browser_query({"sort": "drop table"}).sort == "id"


def test_page_renders_a_filtered_sorted_page_in_a_fixed_number_of_queries(
    client, owner, project, scenes, django_assert_max_num_queries
):
    items = make_items(project, numbered_texts(120))
    for i, item in enumerate(items):
        _predict(project, item, "支付", 0.5 + i / 300, 0.3)
    client.force_login(owner)
    with django_assert_max_num_queries(32):  # no query per row: 50 rows shown, 120 items
        page = client.get("/projects/alpha/items/", {"sort": "margin", "conf_min": "0.5"})
    html = page.content.decode()
    assert page.status_code == 200 and "120 items match" in html and "page 1 of 3" in html
    assert client.get("/projects/alpha/items/", {"conf_min": "x"}, follow=True).status_code == 200


def test_saved_views_belong_to_their_owner(client, owner, reviewer, project):
    client.force_login(owner)
    client.post("/projects/alpha/items/views/", {"name": "unsure", "query": "sort=margin&conf_max=0.6"})
    view = SavedView.objects.get(user=owner)
    assert (view.name, view.query) == ("unsure", "sort=margin&conf_max=0.6")
    assert "unsure" in client.get("/projects/alpha/items/").content.decode()
    client.force_login(reviewer)
    assert "unsure" not in client.get("/projects/alpha/items/").content.decode()
    client.post(f"/projects/alpha/items/views/{view.pk}/delete/")
    assert SavedView.objects.filter(pk=view.pk).exists()  # not the reviewer's to delete
    client.force_login(owner)
    client.post(f"/projects/alpha/items/views/{view.pk}/delete/")
    assert not SavedView.objects.exists()
    with pytest.raises(ServiceError, match="name"):
        browser_services.save_view(project=project, user=owner, name=" ", query="")


def test_set_split_never_moves_an_assigned_split(project, scenes, owner):
    placed, free = make_items(project, numbered_texts(2))
    set_gold(item=placed, label_key="支付", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    placed.refresh_from_db()
    before = placed.split
    assert before
    target = "test" if before != "test" else "val"
    plan = browser_services.bulk_set_split(project=project, item_ids=[placed.pk, free.pk], split=target, actor=owner)
    assert [i.pk for i in plan.changes] == [free.pk]
    assert "never moves" in plan.refused[0][1]
    placed.refresh_from_db()
    free.refresh_from_db()
    assert (placed.split, free.split) == (before, target)
    event = ItemEvent.objects.get(item=free, kind=ItemEvent.Kind.SPLIT_ASSIGNED)
    assert event.detail == {"split": target, "by": "manual"} and event.actor == owner


def test_relabel_is_a_reviewed_change_with_provenance(project, scenes, reviewer):
    had_gold, no_gold, same = make_items(project, numbered_texts(3))
    set_gold(item=had_gold, label_key="支付", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    set_gold(item=same, label_key="物流", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    ids = [had_gold.pk, no_gold.pk, same.pk]
    with pytest.raises(ServiceError, match="Say why"):
        browser_services.bulk_relabel(project=project, item_ids=ids, label_key="物流", actor=reviewer, reason="")
    with pytest.raises(ServiceError, match="not in taxonomy"):
        browser_services.bulk_relabel(project=project, item_ids=ids, label_key="nope", actor=reviewer, reason="x")
    plan = browser_services.bulk_relabel(
        project=project, item_ids=ids, label_key="物流", actor=reviewer, reason="都是配送问题"
    )
    assert {i.pk for i in plan.changes} == {had_gold.pk, no_gold.pk} and plan.refused[0][0].pk == same.pk
    for item, kind in ((had_gold, ItemEvent.Kind.OVERRIDDEN), (no_gold, ItemEvent.Kind.REVIEWED)):
        gold = GoldLabel.objects.get(item=item)
        assert (gold.label_key, gold.method, gold.decided_by) == ("物流", GoldLabel.Method.REVIEW, reviewer)
        event = ItemEvent.objects.filter(item=item, kind=kind).get()
        assert event.reason == "都是配送问题" and event.detail["via"] == "item_browser"
    assert ItemEvent.objects.get(item=had_gold, kind=ItemEvent.Kind.OVERRIDDEN).label_before == "支付"


def test_send_to_queues(project, scenes, owner):
    gold_item, fresh, other = make_items(project, numbered_texts(3))
    set_gold(item=gold_item, label_key="支付", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    Item.objects.filter(pk=other.pk).update(priority=5.0)
    plan = browser_services.bulk_send_to_queue(
        project=project, item_ids=[gold_item.pk, fresh.pk], queue="annotation", actor=owner
    )
    assert [i.pk for i in plan.changes] == [fresh.pk] and "gold label" in plan.refused[0][1]
    fresh.refresh_from_db()
    assert fresh.priority > 5.0
    plan = browser_services.bulk_send_to_queue(project=project, item_ids=[gold_item.pk], queue="review", actor=owner)
    task = ReviewTask.objects.get(item=gold_item, kind=ReviewTask.Kind.REQUESTED)
    assert task.suggested_label == "支付" and task.status == ReviewTask.Status.OPEN
    again = browser_services.plan_queue(project=project, item_ids=[gold_item.pk], queue="review")
    assert not again.changes and "already waits" in again.refused[0][1]
    fresh_again = browser_services.plan_queue(project=project, item_ids=[gold_item.pk, fresh.pk], queue="annotation")
    assert [i.pk for i in fresh_again.changes] == [fresh.pk]
    # A reviewer works the sent item like any other review task.
    outcome = resolve_review_task(
        project=project, task_id=task.pk, resolved_by=owner, action="correct", label_key="物流"
    )
    assert outcome.outcome == "sent_to_adjudication" and GoldLabel.objects.get(item=gold_item).label_key == "支付"


def test_bulk_view_asks_for_confirmation_first_and_checks_roles(client, owner, annotator, reviewer, project, scenes):
    a, b = make_items(project, numbered_texts(2))
    client.force_login(owner)
    page = client.post("/projects/alpha/items/bulk/", {"action": "delete", "ids": [a.pk, b.pk]})
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    assert Item.objects.count() == 2  # nothing happened yet
    done = client.post("/projects/alpha/items/bulk/", {"action": "delete", "ids": [a.pk], "confirmed": "1"})
    assert done.status_code == 302 and list(Item.objects.values_list("id", flat=True)) == [b.pk]

    client.force_login(reviewer)
    denied = client.post("/projects/alpha/items/bulk/", {"action": "delete", "ids": [b.pk], "confirmed": "1"})
    assert denied.status_code == 403 and Item.objects.filter(pk=b.pk).exists()
    assert (
        client.post("/projects/alpha/items/bulk/", {"action": "split", "ids": [b.pk], "value": "test"}).status_code
        == 403
    )
    client.force_login(annotator)
    relabel = {"action": "relabel", "ids": [b.pk], "value": "支付", "reason": "x", "confirmed": "1"}
    assert client.post("/projects/alpha/items/bulk/", relabel).status_code == 403
    assert not GoldLabel.objects.exists()


def test_bulk_on_every_item_matching_the_filter(client, owner, project, scenes):
    make_items(project, numbered_texts(3), source="web")
    (app,) = make_items(project, ["应用里付款失败了"], source="app")
    client.force_login(owner)
    form = {"action": "split", "value": "test", "scope": "filter", "filter": "source=web"}
    page = client.post("/projects/alpha/items/bulk/", form).content.decode()
    assert "3 items get the split test" in page
    client.post("/projects/alpha/items/bulk/", {**form, "confirmed": "1"})
    assert set(Item.objects.filter(split="test").values_list("source", flat=True)) == {"web"}
    app.refresh_from_db()
    assert app.split == ""


def test_item_page_shows_predictions_reviews_issue_score_and_masked_metadata(client, reviewer, project, scenes):
    (item,) = make_items(project, ["付款失败了"])
    Item.objects.filter(pk=item.pk).update(metadata={"phone": "13812345678", "channel": "app"})
    set_gold(item=item, label_key="支付", taxonomy=scenes, method=GoldLabel.Method.IMPORTED)
    _predict(project, item, "物流", 0.61, 0.3, ref="alpha@v4")
    set_label_issue_scores(
        project=project, model_ref="label-check:e5", rows=[IssueRow(item.pk, "支付", 0.87, "物流", True)]
    )
    browser_services.bulk_send_to_queue(project=project, item_ids=[item.pk], queue="review", actor=reviewer)
    client.force_login(reviewer)
    html = client.get(f"/projects/alpha/items/{item.pk}/").content.decode()
    assert "alpha@v4" in html and "0.610" in html  # the prediction with its version
    assert "0.870" in html and "flagged" in html  # the label-issue score
    assert "Sent from the item browser" in html  # the review task
    assert "13812345678" not in html and "channel" in html  # metadata, masked
    served = client.get(f"/projects/alpha/items/{item.pk}/served/")
    assert served.status_code == 200 and "has not seen this text" in served.content.decode()
