"""The item browser, the item page and the model page's click-through in Debian's Chromium: filter and sort,
save a view, bulk actions through the confirmation step (a split that never moves, a reviewed relabel), the
nearest items on the item page, a confusion cell and a per-class row opening their items, two versions compared."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest

from labeling.models import GoldLabel, Item, ItemEvent, SavedView
from labeling.services.gold import set_gold
from labeling.services.predictions import PredictionRow, record_item_predictions
from modeling.services import training
from modeling.services.serving import forget_loaded_models
from modeling.services.versions import publish_model_version
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts, tiny_params
from tests.workspace.factories import make_items, numbered_texts, publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    from tests.engine.tiny import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-backbone") / "tiny-bert"
    make_tiny_backbone(path, kind="encoder", texts=[text for text, _ in scene_texts(40)])
    return path


@pytest.fixture
def own_dirs(settings, tmp_path):
    settings.TORCH_THREADS = 1
    settings.FEATURE_CACHE_DIR = tmp_path / "features"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    forget_loaded_models()
    yield
    forget_loaded_models()


def _browser_project(project):
    taxonomy = publish_scenes(project)
    items = make_items(project, numbered_texts(8))
    for i, item in enumerate(items):
        top = 0.45 + 0.06 * i
        record_item_predictions(
            project=project,
            model_ref="alpha@v1",
            rows=[
                PredictionRow(
                    item.pk, "支付", top, [{"label": "支付", "probability": top}, {"label": "物流", "probability": 0.4}]
                )
            ],
        )
    set_gold(item=items[0], label_key="物流", taxonomy=taxonomy, method=GoldLabel.Method.IMPORTED)
    return items


def test_owner_filters_saves_a_view_and_runs_bulk_actions_with_confirmation(
    new_page, live_server, project, owner, screenshot_dir
):
    items = _browser_project(project)
    items[0].refresh_from_db()
    assert items[0].split  # gold gave it a split
    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/items/")
    page.fill("#browser-filters input[name=conf_max]", "0.7")
    page.click("#browser-filters button[type=submit]")
    page.wait_for_url(re.compile(r"conf_max=0.7"))
    assert "5 items match" in page.inner_text("#browser-count")
    page.click("th a[data-sort=margin]")
    page.wait_for_url(re.compile(r"sort=margin"))
    ids = [int(row.get_attribute("data-item-id")) for row in page.locator("#browser-table tbody tr").all()]
    assert ids == [items[i].pk for i in range(5)]  # smallest margin first
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "item-browser.png"), full_page=True)

    page.fill("#save-view-form input[name=name]", "unsure")
    page.click("#save-view-form button")
    page.wait_for_selector(".messages .msg-success")
    saved = parse_qs(SavedView.objects.get(user=owner).query)
    assert saved == {"conf_max": ["0.7"], "sort": ["margin"], "model": ["alpha@v1"]}
    page.goto(f"{live_server.url}/projects/{project.slug}/items/")
    page.click("a[data-testid=saved-view]")
    page.wait_for_url(re.compile(r"conf_max=0.7"))

    # Set split on a gold item (split fixed) and a fresh one: the confirmation says why one is left alone.
    # The keyboard ticks them: j moves to a row, x ticks it.
    page.locator("h1").click()
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    assert page.is_checked(f"input[name=ids][value='{items[0].pk}']")
    assert page.is_checked(f"input[name=ids][value='{items[1].pk}']")
    page.select_option("#bulk-action", "split")
    other = "test" if items[0].split != "test" else "val"
    page.select_option("select[name=value][data-for-action=split]", other)
    page.click("#bulk-form button[type=submit]")
    page.wait_for_selector("#bulk-plan")
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "item-bulk-confirm.png"), full_page=True)
    assert "never moves once assigned" in page.inner_text("#bulk-refused")
    assert "1 item gets the split" in page.inner_text("#bulk-summary")
    assert Item.objects.get(pk=items[1].pk).split == ""  # nothing yet
    page.click("#bulk-confirm-form button[type=submit]")
    page.wait_for_selector(".messages .msg-success")
    assert Item.objects.get(pk=items[1].pk).split == other
    assert Item.objects.get(pk=items[0].pk).split == items[0].split

    # Relabel as a reviewed change; the item page tells who, how and why.
    page.check(f"input[name=ids][value='{items[0].pk}']")
    page.select_option("#bulk-action", "relabel")
    page.select_option("select[name=value][data-for-action=relabel]", "支付")
    page.fill("input[name=reason][data-for-action=relabel]", "说的是付款")
    page.click("#bulk-form button[type=submit]")
    page.wait_for_selector("#bulk-confirm-form")
    page.click("#bulk-confirm-form button[type=submit]")
    page.wait_for_selector(".messages .msg-success")
    gold = GoldLabel.objects.get(item=items[0])
    assert (gold.label_key, gold.method, gold.decided_by_id) == ("支付", GoldLabel.Method.REVIEW, owner.pk)
    assert ItemEvent.objects.get(item=items[0], kind=ItemEvent.Kind.OVERRIDDEN).reason == "说的是付款"
    page.goto(f"{live_server.url}/projects/{project.slug}/items/{items[0].pk}/")
    history = page.inner_text("#item-history")
    assert "Gold overridden in review" in history and "说的是付款" in history
    assert "alpha@v1" in page.inner_text("#item-predictions")


def test_reviewer_cannot_delete_and_annotator_sees_no_bulk_actions(new_page, live_server, project, reviewer, annotator):
    _browser_project(project)
    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/items/")
    options = page.locator("#bulk-action option").all_inner_texts()
    assert "Send to a queue" in options and "Delete" not in options and "Set split" not in options
    page = new_page(annotator)
    page.goto(f"{live_server.url}/projects/{project.slug}/items/")
    assert page.locator("#bulk-form").count() == 0


def test_model_page_click_through_item_neighbours_and_compare(
    new_page, live_server, project, owner, own_dirs, tiny_backbone, screenshot_dir
):
    project.retrain_every_n_gold = 1_000_000
    project.save(update_fields=["retrain_every_n_gold"])
    taxonomy = publish_scene_taxonomy(project)
    add_gold_items(project, scene_texts(20), taxonomy)
    first = training.start_training_run(project=project, params=tiny_params(tiny_backbone))
    first.refresh_from_db()
    assert first.status == "succeeded", first.error
    publish_model_version(version=first.model_version, user=owner)
    second = training.start_training_run(project=project, params=tiny_params(tiny_backbone))
    second.refresh_from_db()
    assert second.status == "succeeded", second.error
    version = first.model_version

    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/models/v{version.number}/")
    assert "items per bin" in page.inner_text("#reliability")
    split = "test" if version.metrics.get("test") else "val"
    confusion = version.metrics[split]["confusion"]
    cell = page.locator("#confusion-matrix td a").first
    gold, pred = cell.get_attribute("data-gold"), cell.get_attribute("data-pred")
    expected = confusion["matrix"][confusion["labels"].index(gold)][confusion["labels"].index(pred)]
    assert int(cell.inner_text()) == expected
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "model-confusion.png"), full_page=True)
    cell.click()
    page.wait_for_url(re.compile(r"/items/\?"))
    assert page.locator("#browser-table tbody tr[data-item-id]").count() == expected
    assert {c.split()[0] for c in page.locator("#browser-table td.cell-pred").all_inner_texts()} == {pred}

    page.goto(f"{live_server.url}/projects/{project.slug}/models/v{version.number}/")
    page.locator("#per-class tr a").first.click()
    page.wait_for_url(re.compile(r"/items/\?"))
    label = page.locator("#browser-filters select[name=label]").input_value()
    support = version.metrics[split]["per_class"][label]["support"]
    assert page.locator("#browser-table tbody tr[data-item-id]").count() == support

    # The item page: predictions with their version, and the nearest items loaded from the feature cache.
    page.locator("#browser-table tbody tr[data-item-id] td a").first.click()
    page.wait_for_selector("#similar-items li")
    assert page.locator("#similar-items li").count() == 5
    assert version.ref in page.inner_text("#item-predictions")
    page.click("text=More items like this one")
    page.wait_for_selector("#similar-query")
    assert page.locator("#similar-items li").count() == 20

    page.goto(f"{live_server.url}/projects/{project.slug}/models/")
    page.click("#compare-link")
    page.wait_for_selector("#compare-metrics")
    assert "Macro-F1" in page.inner_text("#compare-metrics")
    assert page.locator("#compare-per-class tbody tr").count() >= 5
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "model-compare.png"), full_page=True)
