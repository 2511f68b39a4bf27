"""An owner imports a file in a real browser: a few hundred lines with unknown labels read as one short
summary; the labels go to the taxonomy draft and the held lines import once it is published; a text already
there with another label is a conflict for adjudication; an .xlsx file imports like a CSV."""

from __future__ import annotations

import io
import json

import openpyxl
import pytest

from labeling.models import GoldConflict, GoldLabel, Item
from labeling.selectors.taxonomy import current_draft
from labeling.services.items import get_or_create_item
from labeling.services.taxonomy import publish_draft
from tests.workspace.factories import publish_scenes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def jsonl_file(rows) -> dict:
    data = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()
    return {"name": "feedback.jsonl", "mimeType": "application/x-ndjson", "buffer": data}


def test_unknown_labels_are_summarised_added_to_the_draft_and_imported(
    new_page, live_server, project, owner, screenshot_dir
):
    publish_scenes(project)
    (known,) = [get_or_create_item(project=project, text="快递三天没动了")[0]]
    GoldLabel.objects.create(
        item=known, label_key="物流", taxonomy=project.taxonomy_versions.get(status="published"), method="imported"
    )
    rows = [{"text": f"第{i}条 海关扣了包裹 {i}", "label": "清关" if i % 3 else "关税"} for i in range(300)]
    rows += [{"text": "快递三天没动了", "label": "支付"}, {"text": "付款失败了", "label": "支付"}]

    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/items/import/")
    page.set_input_files("input[name=file]", jsonl_file(rows))
    page.click("main form button.primary")
    page.wait_for_selector("[data-status=done]")
    groups = page.locator("#rejection-groups tbody tr")
    assert groups.count() == 2
    assert page.locator("#rejection-groups tr[data-label='清关'] .count").inner_text() == "200"
    assert "and 195 more" in page.inner_text("#rejection-groups tr[data-label='清关']")
    assert page.evaluate("document.body.scrollHeight") < 2500  # one short page, not 300 rows
    assert page.inner_text("#conflict-count") == "1"
    if screenshot_dir is not None:
        page.screenshot(path=str(screenshot_dir / "import-summary.png"), full_page=True)

    page.check("#held-lines input[name=label][value='清关']")
    page.click("#held-lines button[value=add_to_draft]")
    page.wait_for_selector(".messages .msg-success")
    assert "清关" in page.inner_text(".messages")
    assert current_draft(project).labels.filter(key="清关").exists()

    publish_draft(draft=current_draft(project))
    page.click("#held-lines button[value=rerun]")
    page.wait_for_selector(".messages .msg-success")
    assert "200 held lines imported" in page.inner_text(".messages")
    assert GoldLabel.objects.filter(item__project=project, label_key="清关").count() == 200

    page.check("#held-lines input[name=label][value='关税']")
    page.click("#held-lines button[value=without_label]")
    page.wait_for_selector(".messages .msg-success")
    assert Item.objects.filter(project=project, text__contains="海关扣了包裹", gold__isnull=True).count() == 100
    assert page.locator("#held-lines").count() == 0  # nothing waits any more

    page.click("#import-progress a[href$='/adjudication/']")
    conflict = GoldConflict.objects.get(project=project)
    assert "支付" in page.inner_text(f"#adj-{conflict.item_id}")


def test_xlsx_upload_imports_the_first_sheet(new_page, live_server, project, owner):
    publish_scenes(project)
    workbook = openpyxl.Workbook()
    workbook.active.append(["text", "label"])
    workbook.active.append(["航班取消了怎么退票", "旅行"])
    workbook.active.append(["银行卡被扣了两次钱", "支付"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    page = new_page(owner)
    page.goto(f"{live_server.url}/projects/{project.slug}/items/import/")
    page.set_input_files(
        "input[name=file]",
        {"name": "反馈.xlsx", "mimeType": "application/vnd.ms-excel", "buffer": buffer.getvalue()},
    )
    page.click("main form button.primary")
    page.wait_for_selector("[data-status=done]")
    assert GoldLabel.objects.filter(item__project=project).count() == 2

    page.goto(f"{live_server.url}/projects/{project.slug}/items/import/")
    page.set_input_files("input[name=file]", {"name": "broken.xlsx", "mimeType": "x", "buffer": b"PK\x03\x04oops"})
    page.click("main form button.primary")
    page.wait_for_selector("[data-status=failed]")
    assert "not a readable .xlsx workbook" in page.inner_text("#import-progress")
