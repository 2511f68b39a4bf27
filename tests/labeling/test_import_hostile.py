"""Imports: broken lines are rejected alone (with their number), other encodings are detected, a dataset's
own 其他 class becomes gold of the fallback label, and uploads never outlive their job."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from labeling.models import GoldLabel, ImportJob, Item, Label
from labeling.services import imports
from labeling.services.imports import run_import, start_import
from sceneclf_site.api_errors import ServiceError
from tests.labeling.test_import import generated_rows, import_bytes, jsonl, publish_taxonomy


@pytest.fixture(autouse=True)
def _own_upload_dir(settings, tmp_path):
    # Jobs of other tests that were never run keep their files; these tests look at their own folder only.
    settings.UPLOAD_DIR = tmp_path / "uploads"


@pytest.fixture
def published(project):
    return publish_taxonomy(project, ["旅行", "支付", "物流"])


def upload_files(settings, project) -> list[Path]:  # type: ignore[no-untyped-def]
    root = Path(settings.UPLOAD_DIR) / "imports" / str(project.id)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.mark.smoke
def test_a_lone_surrogate_on_line_601_rejects_that_line_only(project, published):
    rows = [jsonl(row).decode() for row in generated_rows(700)]
    rows[600] = '{"text": "abc\\ud800def", "label": "支付"}'
    job = import_bytes(project, "\n".join(rows).encode())
    assert job.status == ImportJob.Status.DONE, job.error
    assert (job.created_count, job.rejected_count) == (699, 1)
    assert job.rejections[0]["line"] == 601
    assert "lone surrogate" in job.rejections[0]["reason"] and "text" in job.rejections[0]["reason"]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"text": "nul \\u0000 here"}', "NUL"),
        ('{"text": "ok", "id": "x\\udc00"}', "lone surrogate"),
        ('{"text": "ok", "meta": {"k": ["\\ud800"]}}', "meta.k[0]"),
        ('{"text": "ok", "score": NaN}', "Broken JSON"),
        ('{"text": "ok", "score": 1e999}', "too large"),
        ('{"text": "ok", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "deeper than 32"),
    ],
)
def test_unstorable_lines_are_rejected_and_the_job_goes_on(project, published, line, needle):
    job = import_bytes(project, jsonl({"text": "第一条"}, line, {"text": "第三条"}))
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.created_count == 2
    assert [(r["line"], r["code"]) for r in job.rejections] == [(2, job.rejections[0]["code"])]
    assert job.rejections[0]["code"] in {"broken_json", "invalid_text", "too_deep"}
    assert needle in job.rejections[0]["reason"]


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("encoding", "rows"),
    [
        ("gbk", [("付款成功了但订单显示未支付", "支付"), ("快递三天没有更新物流信息", "物流"), ("机票改签", "旅行")]),
        ("big5", [("付款成功了但訂單顯示未支付", "支付"), ("快遞三天沒有更新物流資訊", "物流"), ("機票改簽", "旅行")]),
    ],
)
def test_gbk_and_big5_csv_files_are_detected(project, published, encoding, rows, settings):
    data = ("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)).encode(encoding)
    job = import_bytes(project, data, name=f"{encoding}.csv")
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.created_count == 3 and job.rejected_count == 0
    assert job.encoding in {"gb18030", "big5hkscs"}
    assert set(Item.objects.values_list("text", flat=True)) == {text for text, _ in rows}
    assert not upload_files(settings, project)


def test_a_named_encoding_is_used_and_a_wrong_one_explained(project, published):
    data = "text\n退款还没到账\n".encode("gb18030")
    job = start_import(project=project, content=SimpleUploadedFile("a.csv", data), file_name="a.csv", enqueue=False,
                       encoding="GBK")  # fmt: skip
    assert job.encoding == "gb18030"
    assert run_import(job.pk).created_count == 1
    job = start_import(project=project, content=SimpleUploadedFile("b.csv", data), file_name="b.csv", enqueue=False,
                       encoding="utf-8")  # fmt: skip
    job = run_import(job.pk)
    assert job.status == ImportJob.Status.FAILED and "not UTF-8" in job.error
    with pytest.raises(ServiceError, match="Unknown encoding"):
        start_import(project=project, content=SimpleUploadedFile("c.csv", data), file_name="c.csv", encoding="klingon")


def test_a_resumed_job_does_not_convert_twice(project, published, monkeypatch):
    data = ("text\n" + "".join(f"第{i}条退款\n" for i in range(20))).encode("gb18030")
    job = start_import(project=project, content=SimpleUploadedFile("a.csv", data), file_name="a.csv", enqueue=False,
                       encoding="gb18030")  # fmt: skip
    monkeypatch.setattr(imports, "CHUNK_SIZE", 5)
    calls = {"n": 0}
    original = imports._commit_chunk

    def crash_after_two(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed")  # not an Exception: the job stays running, as after a kill
        return original(*args, **kwargs)

    monkeypatch.setattr(imports, "_commit_chunk", crash_after_two)
    with pytest.raises(SystemExit):
        run_import(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING and Path(job.file_path).exists()
    monkeypatch.setattr(imports, "_commit_chunk", original)
    job = run_import(job.pk)
    assert job.status == ImportJob.Status.DONE and job.created_count == 20
    assert set(Item.objects.values_list("text", flat=True)) == {f"第{i}条退款" for i in range(20)}


@pytest.mark.smoke
def test_a_datasets_own_other_class_becomes_gold_of_the_fallback(project, owner, django_capture_on_commit_callbacks):
    taxonomy = publish_taxonomy(project, ["支付", "物流"])
    Label.objects.filter(taxonomy=taxonomy, is_fallback=True).update(key="out_of_scope", name="Out of scope")
    rows = [{"text": f"无关内容{i}", "label": "其他"} for i in range(30)]
    rows += [{"text": "完全无关 a", "label": "oos"}, {"text": "完全无关 b", "label": "ＯＯＳ"}]
    rows += [{"text": "付款失败", "label": "支付"}]
    data = jsonl(*rows)

    job = import_bytes(project, data)
    assert job.labeled_count == 31 and job.rejected_count == 2  # "oos" is not known without the option
    assert "fallback_alias" in job.rejections[0]["reason"]

    client = APIClient()
    client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/projects/alpha/imports",
            {"file": SimpleUploadedFile("again.jsonl", data), "fallback_alias": ["oos"]},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    assert response.json()["fallback_aliases"] == ["oos"]
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == ImportJob.Status.DONE and job.labeled_count == 2 and job.rejected_count == 0
    keys = GoldLabel.objects.values_list("label_key", flat=True)
    assert sorted(set(keys)) == ["out_of_scope", "支付"]
    assert list(keys).count("out_of_scope") == 32
    assert all(gold.method == GoldLabel.Method.IMPORTED for gold in GoldLabel.objects.all())


def test_an_ordinary_label_named_other_keeps_its_own_key(project):
    Label.objects.filter(taxonomy__project=project, is_fallback=True).update(key="fallback", name="fallback")
    publish_taxonomy(project, ["支付", "其他"])
    job = import_bytes(project, jsonl({"text": "别的问题", "label": "其他"}))
    assert GoldLabel.objects.get(item__project=project).label_key == "其他" and job.labeled_count == 1


@pytest.mark.smoke
def test_the_upload_is_removed_when_a_job_crashes(project, published, monkeypatch, settings):
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database gone")

    monkeypatch.setattr(imports, "_store_chunk", broken)
    job = start_import(project=project, content=SimpleUploadedFile("a.jsonl", jsonl({"text": "你好"})),
                       file_name="a.jsonl", enqueue=False)  # fmt: skip
    assert upload_files(settings, project)
    with pytest.raises(RuntimeError):
        run_import(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert not upload_files(settings, project)


def test_the_upload_is_removed_when_the_job_row_cannot_be_created(project, monkeypatch, settings):
    def refuse(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no row")

    monkeypatch.setattr(ImportJob.objects, "create", refuse)
    with pytest.raises(RuntimeError):
        start_import(project=project, content=SimpleUploadedFile("a.jsonl", b'{"text": "x"}'), file_name="a.jsonl")
    assert not upload_files(settings, project)
