"""Personal data sent in every field (texts, ids, metadata, labels, file names, sources, session ids) is found
nowhere afterwards: not in any database table, not in any file under the data folders, not in the logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from feedback.models import PredictionLog
from labeling.models import ImportJob, Item
from sceneclf_site.log_filters import RedactUserText
from tests.feedback.conftest import published_model, token_client  # noqa: F401
from tests.modeling.conftest import _one_thread_and_own_dirs, scene_project, tiny_backbone  # noqa: F401

# Every value is distinct, so a hit names the field it came from.
RAW = {
    "text phone": "13812345671",
    "text email": "zhang.wei@example.com",
    "id": "13812345672",
    "metadata phone": "13812345673",
    "metadata email": "li.na@example.org",
    "metadata number": "13812345674",
    "metadata key": "13812345675",
    "nested metadata": "wang.fang@example.net",
    "id card": "11010519491231002X",
    "csv contact": "13812345676",
    "csv id": "13812345677",
    "label": "13812345678",
    "file name": "13812345679",
    "source": "13812345680",
    "predict text": "13812345681",
    "predict email": "chen.jie@example.com",
    "session id": "13812345682",
    "session email": "sess.user@example.com",
    "review text": "13812345683",
}
FEEDBACK_TEXT = "我的付款一直失败怎么办"


@pytest.fixture
def console_log():
    """What the configured console handler (settings.LOGGING) writes while the test runs, at DEBUG."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactUserText) for f in h.filters))
    buffer = io.StringIO()
    previous_stream, previous_level = handler.setStream(buffer), logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    yield buffer
    logging.getLogger().setLevel(previous_level)
    handler.setStream(previous_stream)


def import_files(project, owner, capture) -> list[ImportJob]:  # type: ignore[no-untyped-def]
    r = RAW
    lines = [
        {
            "text": f"{FEEDBACK_TEXT} 电话{r['text phone']} 邮箱 {r['text email']} 身份证{r['id card']}",
            "id": f"user-{r['id']}",
            "label": "支付",
            "contact": f"电话 {r['metadata phone']} / {r['metadata email']}",
            "phone_number": int(r["metadata number"]),
            r["metadata key"]: "yes",
            "extra": {"emails": [r["nested metadata"]]},
        },
        {"text": "另一条反馈", "label": r["label"]},
        {"text": "第三条 \ud800", "contact": r["metadata phone"]},
    ]
    jsonl = "\n".join(json.dumps(line, ensure_ascii=True) for line in lines).encode()
    csv = f"text,id,contact\n快递丢了,{r['csv id']},打 {r['csv contact']}\n".encode("gb18030")
    client = APIClient()
    client.force_authenticate(owner)
    jobs = []
    for name, data in ((f"投诉-{r['file name']}.jsonl", jsonl), ("contacts.csv", csv)):
        with capture(execute=True):
            response = client.post(
                "/api/v1/projects/alpha/imports",
                {"file": SimpleUploadedFile(name, data), "source": f"crm-{r['source']}"},
                format="multipart",
            )
        assert response.status_code == 202, response.content
        jobs.append(ImportJob.objects.get(pk=response.json()["id"]))
    return jobs


def predict(token_client) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    r = RAW
    for session in (r["session id"], f"s-{r['session email']}"):
        body = {
            "texts": [f"{FEEDBACK_TEXT} 手机{r['predict text']} {r['predict email']}", f"zzq 乱码 {r['review text']}"],
            "session_id": session,
        }
        response = token_client.post("/api/v1/projects/alpha/predict", body, format="json")
        assert response.status_code == 200, response.content


def database_hits() -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dump = repr(cursor.fetchall())
            found = [field for field, value in RAW.items() if value in dump]
            if found:
                hits[table] = found
    return hits


def file_hits(roots: list[Path]) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for root in roots:
        for path in (p for p in Path(root).rglob("*") if p.is_file()):
            data = path.read_bytes()
            found = [field for field, value in RAW.items() if value.encode() in data]
            if found:
                hits[str(path)] = found
    return hits


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_no_raw_personal_data_anywhere(
    mode,
    published_model,  # noqa: F811
    token_client,  # noqa: F811
    scene_project,  # noqa: F811
    owner,
    console_log,
    django_capture_on_commit_callbacks,
):
    scene_project.pii_field_mode = mode
    scene_project.save(update_fields=["pii_field_mode"])

    jobs = import_files(scene_project, owner, django_capture_on_commit_callbacks)
    predict(token_client)

    assert [job.status for job in jobs] == ["done", "done"], [job.error for job in jobs]
    assert [(job.created_count, job.rejected_count) for job in jobs] == [(1, 2), (1, 0)]
    assert jobs[1].encoding == "gb18030" and Item.objects.filter(text="快递丢了").exists()
    item = Item.objects.exclude(external_id="").get(text__startswith=FEEDBACK_TEXT)  # the imported one
    assert item.metadata["contact"] and item.external_id  # kept, in protected form
    if mode == "mask":
        assert item.external_id == "user-<PHONE>" and "<EMAIL>" in item.metadata["contact"]
        assert PredictionLog.objects.filter(session_id="<PHONE>").count() == 2
    else:
        assert item.external_id.startswith("<HASH:") and item.metadata["contact"].startswith("<HASH:")
        assert PredictionLog.objects.filter(session_id__startswith="<HASH:").count() == 4
    assert Item.objects.filter(source="predict").exists()  # abstained texts went to review

    assert database_hits() == {}
    roots = [settings.DATA_DIR, settings.UPLOAD_DIR, settings.ARTIFACT_ROOT, settings.FEATURE_CACHE_DIR]
    assert file_hits(roots) == {}
    log = console_log.getvalue()
    assert "import job" in log  # the real log lines were captured
    assert [field for field, value in RAW.items() if value in log] == []
    assert FEEDBACK_TEXT not in log
