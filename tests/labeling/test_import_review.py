"""Imports that help: rejections grouped by reason and label, decisions on held unknown-label lines, conflicts
with existing gold, and .xlsx files."""

import io
import json

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from labeling.models import GoldConflict, GoldLabel, ImportHeldLine, ImportJob, Item, ItemEvent
from labeling.selectors.imports import rejection_groups
from labeling.selectors.review import adjudication_queue
from labeling.selectors.taxonomy import current_draft
from labeling.services.import_review import (
    add_held_labels_to_draft,
    import_held_without_label,
    reject_held_lines,
    rerun_held_lines,
)
from labeling.services.imports import run_import, start_import
from labeling.services.taxonomy import publish_draft
from sceneclf_site.api_errors import ServiceError
from tests.labeling.conftest import publish_scenes


def jsonl(*rows) -> bytes:
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()


def import_bytes(project, data: bytes, name: str = "feedback.jsonl", owner=None) -> ImportJob:
    upload = SimpleUploadedFile(name, data)
    job = start_import(project=project, content=upload, file_name=name, enqueue=False, created_by=owner)
    return run_import(job.pk)


@pytest.fixture
def published(project):
    return publish_scenes(project)


def unknown_label_file(count: int) -> bytes:
    rows = [{"text": f"第{i}条 售后问题 {i}", "label": "售后" if i % 2 else "退款"} for i in range(count)]
    rows += [{"text": "机票改签收费太贵", "label": "旅行"}, {"text": "   "}]
    return jsonl(*rows)


def test_two_thousand_unknown_label_lines_are_two_groups_with_a_few_line_numbers(project, published):
    job = import_bytes(project, unknown_label_file(2000))
    assert (job.created_count, job.rejected_count) == (1, 2001)
    groups = rejection_groups(job)
    assert [(g.code, g.label, g.count) for g in groups] == [
        ("unknown_label", "售后", 1000),
        ("unknown_label", "退款", 1000),
        ("empty_text", "", 1),
    ]
    assert groups[0].lines == [2, 4, 6, 8, 10] and groups[0].more == 995
    assert groups[0].waiting == 1000
    assert ImportHeldLine.objects.filter(job=job, status=ImportHeldLine.Status.HELD).count() == 2000


def test_report_page_is_a_short_summary(project, published, owner):
    job = import_bytes(project, unknown_label_file(2000))
    client = Client()
    client.force_login(owner)
    html = client.get(reverse("labeling:import_job", args=[project.slug, job.pk])).content.decode()
    assert html.count("<tr data-code=") == 3
    assert "and 995 more" in html
    assert 'name="label" value="售后"' in html and 'value="add_to_draft"' in html


def test_unknown_labels_join_the_draft_and_held_lines_import_after_publishing(project, published):
    job = import_bytes(project, unknown_label_file(20))
    added = add_held_labels_to_draft(job=job, labels=["售后"])
    assert added.labels_added == ["售后"]
    assert set(current_draft(project).labels.values_list("key", flat=True)) >= {"售后", "旅行"}
    with pytest.raises(ServiceError):
        add_held_labels_to_draft(job=job, labels=[])

    before = rerun_held_lines(job=job)  # not published yet: nothing moves
    assert (before.lines, before.still_held) == (0, 20)

    publish_draft(draft=current_draft(project))
    outcome = rerun_held_lines(job=job)
    assert (outcome.lines, outcome.created, outcome.labeled, outcome.still_held) == (10, 10, 10, 10)
    assert GoldLabel.objects.filter(item__project=project, label_key="售后").count() == 10
    job.refresh_from_db()
    assert (job.created_count, job.labeled_count) == (11, 11)
    assert rejection_groups(job)[0].held == {"imported": 10} or rejection_groups(job)[1].held == {"imported": 10}


def test_held_texts_import_without_label_or_are_rejected_and_erased(project, published):
    job = import_bytes(project, unknown_label_file(20))
    unlabeled = import_held_without_label(job=job, labels=["退款"])
    assert (unlabeled.lines, unlabeled.created, unlabeled.labeled) == (10, 10, 0)
    assert Item.objects.filter(project=project, gold__isnull=True).count() == 10
    rejected = reject_held_lines(job=job, labels=["售后"])
    assert rejected.lines == 10
    gone = ImportHeldLine.objects.filter(job=job, status=ImportHeldLine.Status.REJECTED)
    assert gone.count() == 10 and set(gone.values_list("text", flat=True)) == {""}


def test_held_lines_are_masked_like_items(project, published):
    job = import_bytes(project, jsonl({"text": "我电话13812345678 要退款", "label": "退款", "id": "u-13812345678"}))
    held = ImportHeldLine.objects.get(job=job)
    assert "13812345678" not in held.text + held.external_id and "<PHONE>" in held.text


def test_a_known_text_with_another_label_is_a_conflict_for_adjudication(project, published, owner):
    import_bytes(project, jsonl({"text": "快递三天没动了", "label": "物流"}))
    data = jsonl({"text": "快递三天没动了", "label": "支付"}, {"text": "快递三天没动了", "label": "物流"})
    job = import_bytes(project, data, owner=owner)
    assert (job.conflict_count, job.duplicate_count, job.created_count) == (1, 1, 0)
    conflict = GoldConflict.objects.get(project=project)
    assert (conflict.gold_label, conflict.proposed_label, conflict.status) == ("物流", "支付", "open")
    assert conflict.proposed_by == owner and conflict.comment == "feedback.jsonl:1"
    assert GoldLabel.objects.get(item=conflict.item).label_key == "物流"  # gold stays until adjudicated
    assert [entry.item.pk for entry in adjudication_queue(project)] == [conflict.item_id]
    assert ItemEvent.objects.filter(item=conflict.item, kind=ItemEvent.Kind.IMPORT_CONFLICT).count() == 1

    again = import_bytes(project, data, owner=owner)
    assert again.conflict_count == 1
    assert GoldConflict.objects.filter(project=project).count() == 1  # reported again, queued once


def test_a_conflict_inside_one_file(project, published):
    job = import_bytes(project, jsonl({"text": "付款失败", "label": "支付"}, {"text": "付款失败", "label": "旅行"}))
    assert (job.created_count, job.labeled_count, job.conflict_count, job.duplicate_count) == (1, 1, 1, 0)


def workbook_bytes(rows) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_xlsx_imports_like_csv_with_row_numbers(project, published):
    data = workbook_bytes(
        [
            ["ID", "Text", "label", "channel"],
            ["x1", "航班取消了怎么退票", "旅行", "app"],
            [2, "付款失败但是扣钱了", "支付", None],
            [None, None, None, None],
            ["x4", "快递三天没更新", "天气", "web"],
            ["x5", 12345, None, None],
        ]
    )
    job = import_bytes(project, data, name="feedback.xlsx")
    assert job.status == ImportJob.Status.DONE, job.error
    assert (job.file_format, job.created_count, job.labeled_count, job.rejected_count) == ("xlsx", 3, 2, 1)
    assert [(r["line"], r["code"], r["label"]) for r in job.rejections] == [(5, "unknown_label", "天气")]
    assert Item.objects.get(external_id="x1").metadata == {"channel": "app"}
    assert Item.objects.get(external_id="2").gold.label_key == "支付"
    assert Item.objects.filter(text="12345").exists()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"PK\x03\x04 not really a zip", "not a readable .xlsx workbook"),
        (b"just some text", "not a readable .xlsx workbook"),
        (workbook_bytes([["content", "label"], ["a", "b"]]), "no 'text' column (found: content, label)"),
    ],
)
def test_broken_xlsx_files_fail_with_a_clear_error(project, published, data, needle):
    job = import_bytes(project, data, name="broken.xlsx")
    assert job.status == ImportJob.Status.FAILED
    assert needle in job.error


def test_old_excel_files_are_refused_at_upload(project):
    with pytest.raises(ServiceError, match=r"save the sheet as \.xlsx"):
        start_import(project=project, content=io.BytesIO(b"\xd0\xcf\x11\xe0"), file_name="a.xls", enqueue=False)


def test_api_reports_groups_and_takes_decisions(project, published, owner, annotator):
    from rest_framework.test import APIClient

    job = import_bytes(project, unknown_label_file(10))
    api = APIClient()
    api.force_authenticate(owner)
    detail = api.get(f"/api/v1/projects/{project.slug}/imports/{job.pk}").json()
    assert detail["conflict_count"] == 0
    assert [(g["code"], g["label"], g["count"], g["held"]) for g in detail["rejection_groups"]][:2] == [
        ("unknown_label", "售后", 5, {"held": 5}),
        ("unknown_label", "退款", 5, {"held": 5}),
    ]
    url = f"/api/v1/projects/{project.slug}/imports/{job.pk}/held"
    answer = api.post(url, {"action": "without_label", "labels": ["售后"]}, format="json")
    assert answer.status_code == 200 and answer.json()["created"] == 5
    bad = api.post(url, {"action": "explode"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    api.force_authenticate(annotator)
    assert api.post(url, {"action": "reject", "labels": ["退款"]}, format="json").status_code == 403


def test_a_held_line_whose_text_fails_now_stays_held(project, published):
    job = import_bytes(project, jsonl({"text": "短文本", "label": "售后"}, {"text": "长" * 50, "label": "售后"}))
    project.max_text_chars = 10
    project.save()
    outcome = import_held_without_label(job=job, labels=["售后"])
    assert (outcome.lines, outcome.created, outcome.still_held) == (1, 1, 1)
    assert ImportHeldLine.objects.get(job=job, status=ImportHeldLine.Status.HELD).line == 2


def test_import_command_prints_one_line_per_group(project, published, tmp_path, capsys):
    from django.core.management import call_command

    path = tmp_path / "many.jsonl"
    path.write_bytes(unknown_label_file(2000))
    call_command("import_items", str(path), "--project", project.slug, "--inline")
    out = capsys.readouterr().out
    assert "1000 × Unknown label '售后'" in out and "(lines 2, 4, 6, 8, 10 and 995 more)" in out
    assert len(out.splitlines()) < 10
