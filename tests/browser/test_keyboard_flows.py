"""Keyboard-only flows in a real browser: the label filter and examples in the workspace, review and
adjudication by keys (with the adjudication comment in the item's history), bulk re-check by keys."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from labeling.models import Annotation, GoldLabel, ItemEvent, ReviewTask, Role
from labeling.services.projects import add_member
from labeling.services.review import create_review_task
from labeling.services.taxonomy import add_label, get_or_create_draft, publish_draft
from tests.workspace.factories import make_items, publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def publish_many(project, n: int = 40):
    """A taxonomy as large as a real one: n labels, most without a hotkey of their own."""
    draft = get_or_create_draft(project=project)
    for i in range(n):
        add_label(draft=draft, data={"key": f"scene-{i:02d}", "name": f"场景{i:02d}", "order": i})
    add_label(
        draft=draft,
        data={
            "key": "customs",
            "name": "海关清关",
            "order": n,
            "definition": "进口包裹清关、关税、海关扣留。",
            "examples": ["包裹卡在海关一周了"],
            "counter_examples": ["国内快递延误"],
            "edge_cases": ["跨境订单退税"],
        },
    )
    return publish_draft(draft=draft).version


def test_workspace_filter_picks_a_label_and_examples_open_by_key(new_page, live_server, project, annotator):
    project.agreement_share = 0.0
    project.save()
    publish_many(project)
    (first, second) = make_items(project, ["海外购的东西被海关扣了", "包裹一直没到"])
    page = new_page(annotator)
    page.goto(f"{live_server.url}/projects/{project.slug}/workspace/")
    assert page.inner_text("#ws-remaining") == "2"  # the item on screen counts as to do

    item_id = int(page.get_attribute("#ws-item", "data-item-id"))
    page.focus("#ws-label-grid button[data-key='customs']")  # its definition shows; `e` opens its examples
    page.keyboard.press("e")
    examples = page.locator(".ws-def[data-def-for='customs'] details.ws-examples")
    assert examples.evaluate("node => node.open")
    assert "国内快递延误" in examples.inner_text() and "跨境订单退税" in examples.inner_text()
    page.keyboard.press("e")
    assert not examples.evaluate("node => node.open")

    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "ws-pick"
    page.keyboard.type("关税")  # a word of the definition, not of the name
    assert page.locator("#ws-label-grid button.ws-label:visible").count() == 1
    page.keyboard.press("Enter")
    page.wait_for_function(
        "prev => { const el = document.getElementById('ws-item'); return !el || el.dataset.itemId !== String(prev); }",
        arg=item_id,
    )
    assert Annotation.objects.get(annotator=annotator).label_key == "customs"
    assert Annotation.objects.get(annotator=annotator).item_id == item_id

    page.keyboard.press("/")
    page.keyboard.type("场景 07")  # every word must match: key, name or definition
    page.keyboard.press("ArrowDown")  # the only match stays the active one
    page.keyboard.press("Enter")
    page.wait_for_selector("#ws-empty")
    assert set(Annotation.objects.values_list("item_id", "label_key")) == {
        (item_id, "customs"),
        (
            first.pk if item_id == second.pk else second.pk,
            "scene-07",
        ),
    }


def test_review_task_by_keys(new_page, live_server, project, reviewer):
    publish_scenes(project)
    texts = ["付款后订单消失了", "快递被别人签收了", "今天天气不错"]
    first, second, third = make_items(project, texts, source="predict")
    abstained, low = ReviewTask.Kind.ABSTAINED, ReviewTask.Kind.LOW_CONFIDENCE
    corrected = create_review_task(project=project, item=first, kind=abstained, suggested_label="其他")
    confirmed = create_review_task(project=project, item=second, kind=low, suggested_label="物流")
    out_of_scope = create_review_task(project=project, item=third, kind=low, suggested_label="旅行")
    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/review/{corrected.pk}/")
    page.keyboard.press("?")
    assert page.is_visible("#ws-help") and "Correct to the label with that key" in page.inner_text("#ws-help")
    page.keyboard.press("Escape")
    page.wait_for_selector("#ws-help", state="hidden")
    page.keyboard.press("2")  # 支付
    page.wait_for_url(f"**/review/{confirmed.pk}/")
    page.keyboard.press("Enter")  # confirm the suggestion (物流)
    page.wait_for_url(f"**/review/{out_of_scope.pk}/")
    page.keyboard.press("0")  # the fallback: out of scope
    page.wait_for_url(f"**/projects/{project.slug}/review/")
    resolved = {task.pk: (task.resolution, task.resolved_label) for task in ReviewTask.objects.all()}
    assert resolved == {
        corrected.pk: ("corrected", "支付"),
        confirmed.pk: ("confirmed", "物流"),
        out_of_scope.pk: ("out_of_scope", "其他"),
    }


def test_adjudication_by_keys_keeps_the_comment(new_page, live_server, project, annotator, reviewer):
    second = get_user_model().objects.create_user("annotator2", password="pw-for-tests")
    add_member(project=project, user=second, role=Role.ANNOTATOR)
    publish_scenes(project)
    one, two = make_items(project, ["退款到账了但是订单显示未退", "酒店说没收到我的付款"])
    taxonomy = project.taxonomy_versions.get(status="published")
    for item, labels in [(one, ("支付", "售后")), (two, ("旅行", "支付"))]:
        for user, key in zip((annotator, second), labels, strict=True):
            Annotation.objects.create(item=item, annotator=user, label_key=key, taxonomy=taxonomy, time_ms=1000)
    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/adjudication/")
    page.keyboard.press("ArrowDown")  # the second item
    assert page.get_attribute(f"#adj-{two.pk}", "aria-current") == "true"
    page.focus(f"#adj-{two.pk} input[name=reason]")
    page.keyboard.type("说的是付款没到酒店")
    page.keyboard.press("Enter")  # must not decide with the first label button
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    page.keyboard.type("payment")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#adj-{one.pk}")
    assert page.locator(f"#adj-{two.pk}").count() == 0
    gold = GoldLabel.objects.get(item=two)
    assert (gold.label_key, gold.method, gold.decided_by_id) == ("支付", GoldLabel.Method.ADJUDICATED, reviewer.pk)
    event = ItemEvent.objects.get(item=two, kind=ItemEvent.Kind.ADJUDICATED)
    assert event.reason == "说的是付款没到酒店"

    page.keyboard.press("4")  # the remaining (first) item: 售后
    page.wait_for_selector("#adj-empty")
    assert GoldLabel.objects.get(item=one).label_key == "售后"


def test_bulk_recheck_by_keys(new_page, live_server, project, reviewer):
    taxonomy = publish_scenes(project)
    items = make_items(project, ["退货寄回去一周没处理", "换货申请被拒绝", "账号被冻结了"])
    for item in items:
        GoldLabel.objects.create(
            item=item,
            label_key="退换",
            taxonomy=taxonomy,
            method="imported",
            needs_recheck=True,
            recheck_reason="split",
        )
    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/review/")
    page.keyboard.press(" ")  # select the first
    page.keyboard.press("ArrowDown")
    page.keyboard.press(" ")  # and the second
    page.keyboard.press("4")  # both to 售后
    page.wait_for_selector(".messages")
    assert "2 items re-checked" in page.inner_text(".messages")
    moved = {gold.item_id: gold.label_key for gold in GoldLabel.objects.filter(needs_recheck=False)}
    assert moved == {items[0].pk: "售后", items[1].pk: "售后"}
    assert ItemEvent.objects.filter(kind=ItemEvent.Kind.RECHECKED, actor=reviewer).count() == 2

    page.keyboard.press("/")  # nothing selected: the filter moves the current item only
    page.keyboard.type("account")
    page.keyboard.press("Enter")
    page.wait_for_selector("#recheck-form", state="detached")
    assert GoldLabel.objects.get(item=items[2]).label_key == "账户"
