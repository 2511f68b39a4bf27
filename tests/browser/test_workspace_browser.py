"""End-to-end in a real browser: keyboard-only labelling, adjudication, edge cases from agreement, review."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from labeling.models import Annotation, GoldLabel, ItemSuggestion, Label, ReviewTask, Role, Skip, TaxonomyVersion
from labeling.services.agreement import compute_agreement
from labeling.services.projects import add_member
from labeling.services.review import create_review_task
from labeling.services.workspace import set_suggestions
from tests.workspace.factories import TEXTS, make_items, publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def current_item_id(page) -> int:
    return int(page.get_attribute("#ws-item", "data-item-id"))


def wait_for_new_item(page, previous: int) -> int:
    page.wait_for_function(
        "prev => { const el = document.getElementById('ws-item'); return el && el.dataset.itemId !== String(prev); }",
        arg=previous,
    )
    return current_item_id(page)


def test_keyboard_only_label_undo_skip(new_page, live_server, project, annotator, screenshot_dir):
    project.agreement_share = 0.0
    project.save()
    publish_scenes(project)
    items = make_items(project)
    set_suggestions(
        project, [(item.pk, "物流", 0.62, [{"label": "物流", "probability": 0.62}]) for item in items], "m1"
    )
    page = new_page(annotator, language="zh-hans")
    page.goto(f"{live_server.url}/projects/{project.slug}/workspace/")
    assert page.inner_text("h1") == "标注工作台"  # Chinese UI through Django i18n
    page.evaluate("window.__noReload = 42")
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "workspace.png"), full_page=True)

    done: list[tuple[int, str]] = []
    item_id = current_item_id(page)
    for key, label in [("1", "旅行"), ("2", "支付"), ("Enter", "物流"), ("4", "售后"), ("5", "账户")]:
        page.keyboard.press(key)  # Enter accepts the model's suggestion (物流)
        done.append((item_id, label))
        item_id = wait_for_new_item(page, item_id)

    page.keyboard.press("?")
    assert page.is_visible("#ws-help")
    page.keyboard.press("Escape")
    page.wait_for_selector("#ws-help", state="hidden")
    page.keyboard.press("u")  # the fifth label comes back
    undone = wait_for_new_item(page, item_id)
    assert undone == done[-1][0]
    page.keyboard.press("s")
    page.keyboard.type("needs context")
    page.keyboard.press("Enter")
    after_skip = wait_for_new_item(page, undone)
    assert after_skip != undone
    assert page.evaluate("window.__noReload") == 42  # htmx swaps, no full page load
    assert page.inner_text("#ws-total") == "4"

    annotations = list(Annotation.objects.filter(annotator=annotator).order_by("id"))
    assert [(a.item_id, a.label_key) for a in annotations] == done[:4]
    assert all(0 < a.time_ms <= 600_000 for a in annotations)
    assert {a.taxonomy_id for a in annotations} == {TaxonomyVersion.objects.get(project=project).pk}
    skip = Skip.objects.get()
    assert (skip.item_id, skip.annotator_id, skip.reason) == (undone, annotator.pk, "needs context")
    assert GoldLabel.objects.count() == 4  # k = 1: each label is gold (single); the undone one is not


def test_mobile_width_is_usable(new_page, live_server, project, annotator):
    publish_scenes(project)
    make_items(project, TEXTS[:2])
    page = new_page(annotator, width=390, height=780)
    page.goto(f"{live_server.url}/projects/{project.slug}/workspace/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    first = current_item_id(page)
    page.click(".ws-label[data-key='支付']")
    wait_for_new_item(page, first)
    assert Annotation.objects.get().label_key == "支付"


def test_disagreement_goes_to_adjudication(new_page, live_server, project, annotator, reviewer):
    second = get_user_model().objects.create_user("annotator2", password="pw-for-tests")
    add_member(project=project, user=second, role=Role.ANNOTATOR)
    project.overlap_k = 2
    project.save()
    publish_scenes(project)
    (item,) = make_items(project, ["退款说已到账但银行卡里没有"])
    for user, key in [(annotator, "2"), (second, "4")]:
        page = new_page(user)
        page.goto(f"{live_server.url}/projects/{project.slug}/workspace/")
        assert current_item_id(page) == item.pk
        page.keyboard.press(key)
        page.wait_for_selector("#ws-empty")
    assert set(Annotation.objects.values_list("label_key", flat=True)) == {"支付", "售后"}
    assert not GoldLabel.objects.exists()

    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/adjudication/")
    entry = page.locator(f"#adj-{item.pk}")
    assert "annotator2: 售后" in entry.inner_text()
    entry.locator("button[data-label='支付']").click()
    page.wait_for_selector("#adj-empty")
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.method, gold.decided_by_id) == ("支付", GoldLabel.Method.ADJUDICATED, reviewer.pk)


def test_owner_adds_edge_case_from_agreement_and_publishes(
    new_page, live_server, project, owner, annotator, screenshot_dir
):
    publish_scenes(project)
    second = get_user_model().objects.create_user("annotator2", password="pw-for-tests")
    add_member(project=project, user=second, role=Role.ANNOTATOR)
    taxonomy = TaxonomyVersion.objects.get(project=project, status="published")
    items = make_items(project)
    pairs = [
        ("旅行", "旅行"),
        ("支付", "支付"),
        ("物流", "物流"),
        ("售后", "物流"),
        ("账户", "账户"),
        ("旅行", "旅行"),
        ("支付", "其他"),
        ("物流", "物流"),
        ("账户", "账户"),
        ("售后", "售后"),
    ]
    for item, (a, b) in zip(items, pairs, strict=False):
        Annotation.objects.create(item=item, annotator=annotator, label_key=a, taxonomy=taxonomy, time_ms=900)
        Annotation.objects.create(item=item, annotator=second, label_key=b, taxonomy=taxonomy, time_ms=1100)
    compute_agreement(project)
    disputed = items[3]  # 售后 vs 物流

    page = new_page(owner, language="zh-hans")
    page.goto(f"{live_server.url}/projects/{project.slug}/agreement/")
    assert page.locator("#per-label tr.flagged[data-label='售后']").count() == 1
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "agreement.png"), full_page=True)
    page.locator(
        f"table.disagreements[data-label='售后'] tr[data-item-id='{disputed.pk}'] button.add-edge-case"
    ).click()
    page.wait_for_load_state()
    draft = TaxonomyVersion.objects.get(project=project, status="draft")
    edge_cases = Label.objects.get(taxonomy=draft, key="售后").edge_cases
    assert any(case.startswith(disputed.text) for case in edge_cases)

    page.goto(f"{live_server.url}/projects/{project.slug}/taxonomy/draft/publish/")
    page.click("main form button.primary[type=submit]")
    page.wait_for_load_state()
    draft.refresh_from_db()
    assert draft.is_published
    published = Label.objects.get(taxonomy=draft, key="售后")
    assert any(disputed.text in case for case in published.edge_cases)


def test_reviewer_corrects_abstained_prediction(new_page, live_server, project, reviewer):
    publish_scenes(project)
    (item,) = make_items(project, ["飞机晚点三小时也没人管"], source="predict")
    task = create_review_task(
        project=project,
        item=item,
        kind=ReviewTask.Kind.ABSTAINED,
        suggested_label="其他",
        confidence=0.34,
        topk=[{"label": "物流", "probability": 0.34}, {"label": "旅行", "probability": 0.31}],
        neighbours=[{"text": "航班取消了怎么退票", "label": "旅行", "similarity": 0.83}],
        model_version_ref="v1",
    )
    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/review/")
    page.click(f"tr[data-task-id='{task.pk}'] a.button")
    assert "航班取消了怎么退票" in page.inner_text("#review-neighbours")
    assert "0.340" in page.inner_text("#review-topk")
    page.fill("#review-form textarea[name=comment]", "航班延误属于旅行")
    page.click("#review-form button[data-key='旅行']")
    page.wait_for_load_state()
    task.refresh_from_db()
    assert (task.status, task.resolution, task.resolved_label) == ("resolved", "corrected", "旅行")
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.method, gold.decided_by_id) == ("旅行", GoldLabel.Method.REVIEW, reviewer.pk)


def test_zero_shot_suggestion_before_the_first_model(
    new_page, live_server, project, annotator, settings, tmp_path, screenshot_dir
):
    from modeling.models import ModelVersion
    from modeling.services.active_learning import score_pool
    from tests.engine.tiny import make_tiny_backbone

    settings.DEFAULT_BACKBONE = str(make_tiny_backbone(tmp_path / "tiny-e5", texts=TEXTS).path)
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    project.agreement_share = 0.0
    project.save()
    publish_scenes(project)
    make_items(project)
    assert not ModelVersion.objects.filter(project=project).exists()
    round_ = score_pool(project)  # no model yet: the zero-shot cold start scores the pool
    assert round_.strategy == "zero_shot"

    page = new_page(annotator, language="zh-hans")
    page.goto(f"{live_server.url}/projects/{project.slug}/workspace/")
    item_id = current_item_id(page)
    suggested = page.get_attribute("#ws-item", "data-suggested")
    assert suggested == ItemSuggestion.objects.get(item_id=item_id).label_key
    assert page.get_attribute("#ws-suggestion", "data-source") == "zero_shot"
    assert "零样本建议" in page.inner_text("#ws-suggestion")  # marked, in the annotator's language
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "workspace_zero_shot.png"), full_page=True)
    page.keyboard.press("Enter")  # accepts it, as a model's suggestion
    wait_for_new_item(page, item_id)
    annotation = Annotation.objects.get(annotator=annotator)
    assert (annotation.item_id, annotation.label_key) == (item_id, suggested)
