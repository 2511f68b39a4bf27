import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import GoldLabel, ImportJob, Item, Label, TaxonomyVersion
from labeling.services import imports
from labeling.services.imports import run_import, start_import
from labeling.services.projects import create_api_token


def publish_taxonomy(project, keys):
    """The project's first draft (holding 其他) with `keys` added, published."""
    draft = TaxonomyVersion.objects.get(project=project, status=TaxonomyVersion.Status.DRAFT)
    for order, key in enumerate(keys):
        Label.objects.create(taxonomy=draft, key=key, name=key, order=order, hotkey=str(order + 1))
    draft.status = TaxonomyVersion.Status.PUBLISHED
    draft.published_at = timezone.now()
    draft.save()
    return draft


def jsonl(*rows) -> bytes:
    return "\n".join(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows).encode()


def import_bytes(project, data: bytes, name: str = "feedback.jsonl") -> ImportJob:
    job = start_import(project=project, content=SimpleUploadedFile(name, data), file_name=name, enqueue=False)
    return run_import(job.pk)


@pytest.fixture
def published(project):
    return publish_taxonomy(project, ["旅行", "支付", "物流"])


def generated_rows(count: int) -> list[dict]:
    labels = ["旅行", "支付", "物流", None]
    return [{"text": f"第{i}条反馈 text number {i}", "label": labels[i % 4], "id": f"ext-{i}"} for i in range(count)]


@pytest.mark.smoke
def test_import_counts_and_reimport_creates_nothing(project, published, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 7)  # several chunks even for a tiny file
    rows = generated_rows(30)
    rows += [rows[0], rows[5]]  # duplicates inside the file
    data = jsonl(*rows)

    job = import_bytes(project, data)
    assert job.status == ImportJob.Status.DONE
    assert (job.total_lines, job.processed_lines) == (32, 32)
    assert (job.created_count, job.duplicate_count, job.rejected_count) == (30, 2, 0)
    assert job.labeled_count == 23  # every row but those with label None (i % 4 == 3)
    assert Item.objects.filter(project=project).count() == 30
    gold = GoldLabel.objects.get(item__external_id="ext-1")
    assert (gold.label_key, gold.method, gold.taxonomy_id) == ("支付", GoldLabel.Method.IMPORTED, published.id)
    assert Item.objects.get(external_id="ext-3").metadata == {}

    again = import_bytes(project, data)
    assert (again.created_count, again.duplicate_count, again.rejected_count, again.labeled_count) == (0, 32, 0, 0)
    assert Item.objects.filter(project=project).count() == 30
    assert GoldLabel.objects.filter(item__project=project).count() == 23


def test_bad_lines_are_reported_by_number_and_good_lines_import(project, published):
    data = jsonl(
        {"text": "机票改签收了我两百块手续费", "label": "旅行"},  # 1 ok
        '{"text": "broken json", ',  # 2
        {"text": "   "},  # 3 empty text
        {"text": "长" * 100_000},  # 4 too long
        {"text": "快递三天没动了", "label": "天气"},  # 5 unknown label
        '["not", "an", "object"]',  # 6
        {"content": "no text field"},  # 7
        "",  # 8 blank line
        {"text": "付款失败但是扣钱了", "label": "支付", "channel": "app", "rating": 1},  # 9 ok
        {"text": 12345},  # 10
        {"text": "物流信息一直不更新"},  # 11 ok, unlabelled
    )
    job = import_bytes(project, data)
    assert job.status == ImportJob.Status.DONE
    assert (job.created_count, job.rejected_count, job.duplicate_count, job.labeled_count) == (3, 8, 0, 2)
    reasons = {rejection["line"]: rejection["reason"] for rejection in job.rejections}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "Broken JSON" in reasons[2]
    assert "Empty" in reasons[3]
    assert "100000 characters" in reasons[4] and "2000" in reasons[4] and "max_text_chars" in reasons[4]
    assert "Unknown label '天气'" in reasons[5] and "v1" in reasons[5]
    assert "Not a JSON object" in reasons[6]
    assert "No 'text' field" in reasons[7]
    assert "string" in reasons[10]
    item = Item.objects.get(text="付款失败但是扣钱了")
    assert item.metadata == {"channel": "app", "rating": 1}
    assert item.gold.label_key == "支付"


def test_label_without_published_taxonomy_is_rejected_with_a_hint(project):
    job = import_bytes(project, jsonl({"text": "退款还没到", "label": "售后"}, {"text": "怎么改密码"}))
    assert (job.created_count, job.rejected_count) == (1, 1)
    assert job.rejections[0]["line"] == 1
    assert "publish a taxonomy first" in job.rejections[0]["reason"]


def test_pii_is_masked_before_storing_and_raw_text_only_on_opt_in(project, published):
    text = "我电话13812345678，订单号 2023100112345678 还没发货"
    import_bytes(project, jsonl({"text": text}))
    item = Item.objects.get(project=project)
    assert item.text == "我电话<PHONE>，订单号 <ORDER_ID> 还没发货"
    assert "13812345678" not in item.normalized_text and item.raw_text == ""

    project.keep_raw_text = True
    project.save()
    import_bytes(project, jsonl({"text": "邮箱 a.b@example.com 收不到验证码"}))
    kept = Item.objects.get(project=project, text__contains="<EMAIL>")
    assert kept.raw_text == "邮箱 a.b@example.com 收不到验证码"


def test_same_text_with_different_pii_or_width_is_a_duplicate(project, published):
    same = jsonl({"text": "电话 13812345678 退款"}, {"text": " 电话  １３９００００１１１１  退款 "})
    job = import_bytes(project, same)
    assert (job.created_count, job.duplicate_count) == (1, 1)


def test_csv_import_with_labels_ids_metadata_and_a_broken_row(project, published):
    data = (
        "id,text,label,channel\n"
        'c1,"航班取消了，怎么退票",旅行,app\n'
        "c2,扫码支付一直转圈,支付,\n"
        "c3,only two fields\n"
        'c4,"多行\n文本也可以",,web\n'
    ).encode()
    job = import_bytes(project, data, name="feedback.csv")
    assert (job.created_count, job.rejected_count, job.labeled_count) == (3, 1, 2)
    assert job.rejections == [
        {"line": 4, "reason": "Broken CSV row: 2 fields, the header has 4.", "code": "broken_row", "label": ""}
    ]
    first = Item.objects.get(external_id="c1")
    assert first.metadata == {"channel": "app"} and first.gold.label_key == "旅行"
    assert Item.objects.get(external_id="c4").normalized_text == "多行 文本也可以"


def test_file_in_no_recognisable_encoding_fails_with_a_clear_error(project):
    job = import_bytes(project, bytes(range(256)) * 10, name="binary.jsonl")
    assert job.status == ImportJob.Status.FAILED
    assert "not UTF-8" in job.error and "encoding" in job.error and "gb18030" in job.error
    assert not Item.objects.exists()


def test_file_that_is_neither_jsonl_nor_csv_fails_with_a_clear_error(project):
    job = import_bytes(project, b"just some notes\nwithout any structure\n", name="notes.txt")
    assert job.status == ImportJob.Status.FAILED
    assert "neither JSONL nor a CSV" in job.error
    broken = import_bytes(project, b"this is not json\n", name="x.jsonl")
    assert "does not look like JSONL" in broken.error


def test_a_crashed_job_resumes_without_duplicating_work(project, published, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 5)
    data = jsonl(*generated_rows(12))
    job = start_import(project=project, content=SimpleUploadedFile("f.jsonl", data), file_name="f.jsonl", enqueue=False)
    real_add = imports._add_to_job
    calls = {"n": 0}

    def dies_after_first_chunk(job_, outcome, lines):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("worker killed")  # not an Exception: the job is left running, like a killed worker
        real_add(job_, outcome, lines)

    monkeypatch.setattr(imports, "_add_to_job", dies_after_first_chunk)
    with pytest.raises(SystemExit):
        run_import(job.pk)
    job.refresh_from_db()
    assert (job.status, job.processed_lines, job.created_count) == (ImportJob.Status.RUNNING, 5, 5)
    assert Item.objects.count() == 5  # the chunk in flight was rolled back

    monkeypatch.setattr(imports, "_add_to_job", real_add)
    job = run_import(job.pk)
    assert (job.status, job.processed_lines, job.created_count, job.duplicate_count) == ("done", 12, 12, 0)
    assert Item.objects.count() == 12


def test_uploaded_file_is_removed_after_the_import(project, published):
    upload = SimpleUploadedFile("f.jsonl", jsonl({"text": "hi"}))
    job = start_import(project=project, content=upload, file_name="f.jsonl", enqueue=False)
    assert Path(job.file_path).exists()
    run_import(job.pk)
    assert not Path(job.file_path).exists()  # it held unmasked text


@pytest.fixture
def api(owner):
    client = APIClient()
    client.force_authenticate(owner)
    return client


def test_api_import_runs_as_task_and_reports(project, published, api, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("f.jsonl", jsonl(*generated_rows(10), '{"bad'))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    detail = api.get(f"/api/v1/projects/{project.slug}/imports/{job_id}").json()
    assert detail["status"] == "done"
    assert detail["progress"] == 1.0
    assert (detail["created_count"], detail["rejected_count"], detail["labeled_count"]) == (10, 1, 8)
    assert detail["rejections"][0]["line"] == 11
    assert ImportJob.objects.get(pk=job_id).task_id
    listing = api.get(f"/api/v1/projects/{project.slug}/imports").json()
    assert [job["id"] for job in listing] == [job_id]


def test_api_import_needs_manage_role_and_no_token(project, annotator):
    client = APIClient()
    client.force_authenticate(annotator)
    upload = SimpleUploadedFile("f.jsonl", jsonl({"text": "x"}))
    assert client.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}).status_code == 403
    secret = create_api_token(project=project, name="t").secret
    token_client = APIClient(HTTP_AUTHORIZATION=f"Token {secret}")
    upload = SimpleUploadedFile("f.jsonl", jsonl({"text": "x"}))
    assert token_client.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}).status_code in (401, 403)
    assert not ImportJob.objects.exists()


def test_api_import_without_a_file_is_a_clear_400(project, api):
    response = api.post(f"/api/v1/projects/{project.slug}/imports", {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_import_command_inline(project, published, tmp_path, capsys):
    path = tmp_path / "feedback.jsonl"
    path.write_bytes(jsonl(*generated_rows(6)))
    call_command("import_items", str(path), "--project", project.slug, "--source", "cli", "--inline")
    out = capsys.readouterr().out
    assert "6 created, 0 duplicates, 0 conflicts, 0 rejected, 5 gold labels" in out
    assert set(Item.objects.values_list("source", flat=True)) == {"cli"}


def test_import_command_waits_for_the_queued_task(transactional_db, project, published, tmp_path, capsys):
    # transactional_db: the command's commit really happens, so the task is queued (and run eagerly).
    path = tmp_path / "feedback.csv"
    path.write_text("text,label\n快递丢了,物流\n,旅行\n", encoding="utf-8")
    call_command("import_items", str(path), "--project", project.slug, "--wait")
    out = capsys.readouterr().out
    assert "1 created, 0 duplicates, 0 conflicts, 1 rejected, 1 gold labels" in out
    assert "1 × Empty text. (lines 3)" in out


def test_browser_upload_and_progress_page(project, published, owner, client, django_capture_on_commit_callbacks):
    client.force_login(owner)
    upload = SimpleUploadedFile("f.jsonl", jsonl(*generated_rows(4)))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.slug}/items/import/", {"file": upload})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert response["Location"].endswith(f"/items/imports/{job.pk}/")
    page = client.get(response["Location"]).content.decode()
    assert 'data-status="done"' in page and "hx-trigger" not in page

    ImportJob.objects.filter(pk=job.pk).update(status="running", processed_lines=2)
    fragment = client.get(f"/projects/{project.slug}/items/imports/{job.pk}/progress/").content.decode()
    assert 'hx-trigger="every 1s"' in fragment and 'value="2"' in fragment
    assert client.get(f"/projects/{project.slug}/items/imports/999/").status_code == 404
