"""A new reviewer's walk in a real browser: an abstained text already has gold; the review page shows that
gold (label, method, who), a differing decision goes to adjudication instead of over gold, and the item page
tells the whole story."""

from __future__ import annotations

import pytest

from labeling.models import GoldConflict, GoldLabel, ReviewTask
from labeling.services.review import create_review_task
from labeling.services.workspace import next_assignment, submit_annotation
from tests.workspace.factories import make_items, publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_sees_existing_gold_and_the_conflict_goes_to_adjudication(
    new_page, live_server, project, annotator, reviewer, screenshot_dir
):
    project.agreement_share = 0.0
    project.save()
    publish_scenes(project)
    (item,) = make_items(project, ["酒店前台态度很差还乱收费"])
    assignment = next_assignment(project=project, annotator=annotator)
    submit_annotation(project=project, annotator=annotator, item_id=assignment.item_id, label_key="旅行", time_ms=900)
    task = create_review_task(
        project=project,
        item=item,
        kind=ReviewTask.Kind.ABSTAINED,
        suggested_label="其他",
        confidence=0.28,
        topk=[{"label": "其他", "probability": 0.28}, {"label": "旅行", "probability": 0.27}],
        model_version_ref="v2",
    )

    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/review/")
    row = page.locator(f"tr[data-task-id='{task.pk}']")
    assert "旅行" in row.locator(".review-gold").inner_text()
    row.locator("a.button").click()
    gold_line = page.inner_text("#review-gold")
    assert "旅行" in gold_line and "Single annotator" in gold_line and "annotator" in gold_line
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "review-existing-gold.png"), full_page=True)

    page.fill("#review-form textarea[name=comment]", "投诉的是服务，不是行程")
    page.click("#review-form button[value=out_of_scope]")
    page.wait_for_selector(".messages .msg-warning")
    assert "went to adjudication" in page.inner_text(".messages")
    gold = GoldLabel.objects.get(item=item)
    assert (gold.label_key, gold.method) == ("旅行", GoldLabel.Method.SINGLE)  # not overwritten
    assert GoldConflict.objects.get(item=item).proposed_label == "其他"

    page.goto(f"{live_server.url}/projects/{project.slug}/adjudication/")
    entry = page.locator(f"#adj-{item.pk}")
    assert "旅行" in entry.locator(".adj-gold").inner_text()
    assert "其他" in entry.locator(".adj-conflicts").inner_text()
    entry.locator("input[name=reason]").fill("说的是酒店服务")
    entry.locator("button[data-label='其他']").click()
    page.wait_for_selector("#adj-empty")
    gold.refresh_from_db()
    assert (gold.label_key, gold.method, gold.decided_by_id) == ("其他", GoldLabel.Method.ADJUDICATED, reviewer.pk)

    page.goto(f"{live_server.url}/projects/{project.slug}/items/{item.pk}/")
    history = page.inner_text("#item-history")
    for text in ("Annotated", "Review disagrees with gold", "Adjudicated", "说的是酒店服务"):
        assert text in history
    assert "Adjudicated" in page.inner_text("#item-gold")
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "item-history.png"), full_page=True)
