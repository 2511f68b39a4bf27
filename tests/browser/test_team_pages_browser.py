"""The pages a team lead reads, in a real browser: agreement with its interval and small-overlap warning and
the lowest-agreement items sent to review; annotator statistics with check items; the taxonomy diff's marked
words; an owner creating a member's account."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from labeling.models import Annotation, CheckItem, GoldLabel, ReviewTask, Role
from labeling.services.agreement import compute_agreement
from labeling.services.projects import add_member
from labeling.services.taxonomy import get_or_create_draft, publish_draft, update_label
from tests.browser.conftest import PASSWORD
from tests.workspace.factories import make_items, publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = [
    ["旅行", "旅行", "旅行"],
    ["旅行", "支付", "物流"],
    ["支付", "支付", "物流"],
    ["物流", "物流", "物流"],
    ["支付", "旅行", "旅行"],
]


def three_raters(project):
    users = []
    for name in ("rater_a", "rater_b", "rater_c"):
        user = get_user_model().objects.create_user(name, password=PASSWORD)
        add_member(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user)
    return users


def annotate(project, rows, users):
    taxonomy = project.taxonomy_versions.get(status="published")
    items = make_items(project, [f"第{i}条一致性反馈" for i in range(len(rows))])
    for item, row in zip(items, rows, strict=True):
        for user, label in zip(users, row, strict=True):
            Annotation.objects.create(item=item, annotator=user, label_key=label, taxonomy=taxonomy, time_ms=1500)
    return items


def test_agreement_warns_shows_the_interval_and_queues_the_lowest_first(
    new_page, live_server, project, reviewer, screenshot_dir
):
    publish_scenes(project)
    items = annotate(project, ROWS, three_raters(project))
    compute_agreement(project)
    page = new_page(reviewer)
    page.goto(f"{live_server.url}/projects/{project.slug}/agreement/")
    assert "Only 5 items" in page.inner_text("#overlap-warning")
    assert "95% interval" in page.inner_text("#alpha-ci")
    first_rows = page.locator("table.agreement-queue tbody tr")
    assert first_rows.first.get_attribute("data-item-id") == str(items[1].pk)
    assert page.locator("#per-label .few-items").count() >= 3
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "agreement-small-overlap.png"), full_page=True)

    page.fill("input[name=limit]", "2")
    page.click("#queue-low-agreement")
    page.wait_for_selector(".messages .msg-success")
    assert page.url.endswith("?kind=low_agreement")
    shown = [int(row.get_attribute("data-task-id")) for row in page.locator("#review-tasks tbody tr").all()]
    tasks = ReviewTask.objects.filter(kind="low_agreement").order_by("created_at", "id")
    assert shown == [task.pk for task in tasks]
    assert [task.item_id for task in tasks] == [items[1].pk, items[2].pk]


def test_annotator_statistics_and_check_items(new_page, live_server, project, owner, screenshot_dir):
    publish_scenes(project)
    users = three_raters(project)
    items = annotate(project, ROWS, users)
    taxonomy = project.taxonomy_versions.get(status="published")
    for item in items[:2]:
        GoldLabel.objects.create(item=item, label_key="旅行", taxonomy=taxonomy, method=GoldLabel.Method.ADJUDICATED)

    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/annotators/")
    row = page.locator("#annotator-stats tr[data-annotator='rater_a']")
    assert row.locator(".n-labels").inner_text() == "5"
    assert row.locator(".per-hour").inner_text() == "2400"  # 1.5 s an item
    assert row.locator(".with-gold").inner_text().startswith("100%")
    assert "50% (1/2)" in page.inner_text("#annotator-stats tr[data-annotator='rater_b'] .with-gold")

    page.check(f"#check-candidates input[value='{items[0].pk}']")
    page.click("#check-candidates button[type=submit]")
    page.wait_for_selector(".messages .msg-success")
    assert list(CheckItem.objects.values_list("item_id", flat=True)) == [items[0].pk]
    assert page.locator(f"#check-item-list tr[data-item-id='{items[0].pk}']").count() == 1
    page.fill("#rate-percent", "10")
    page.click("#check-items form.decide button")
    page.wait_for_selector(".messages .msg-success")
    assert "10.0%" in page.inner_text(".messages")
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "annotators.png"), full_page=True)


def test_taxonomy_diff_marks_the_changed_words(new_page, live_server, project, owner):
    publish_scenes(project)
    draft = get_or_create_draft(project=project)
    update_label(draft=draft, key="支付", data={"definition": "付款、扣款、退款没到账相关。"})
    publish_draft(draft=draft)
    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/taxonomy/diff/?a=1&b=2")
    change = page.locator("#diff li[data-field='definition']")
    assert change.locator(".diff-new ins").all_inner_texts() == ["没"]
    assert change.locator(".diff-old del").count() == 0


def test_owner_creates_an_account_for_a_new_member(new_page, live_server, project, owner):
    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/members/")
    form = page.locator("#create-account form")
    assert form.locator("select[name=role]").input_value() == "annotator"
    form.locator("input[name=username]").fill("wangfang")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".messages .msg-success")
    assert "wangfang" in page.inner_text("main table")
    newcomer = get_user_model().objects.get(username="wangfang")
    member_page = new_page(newcomer)
    member_page.goto(f"{live_server.url}/projects/{project.slug}/workspace/")
    assert member_page.locator("h1").count() >= 1 and "403" not in member_page.title()
