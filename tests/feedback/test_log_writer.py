"""The buffered prediction-log writer: rows reach the database off the request path, the feedback API finds a
request_id right after predict answered, a stopped process flushes at exit, and the rows of a killed process
are replayed from its spool file, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from feedback.models import PredictionLog
from feedback.services import log_writer
from labeling.services.projects import create_api_token
from tests.worker import ROOT, database_url_for_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def buffered(settings, tmp_path):
    settings.PREDICTION_LOG_FLUSH_MS = 200
    settings.PREDICTION_LOG_SPOOL_DIR = tmp_path / "spool"
    log_writer.close_writer()
    yield tmp_path / "spool"
    log_writer.close_writer()


def dropped() -> float:
    return log_writer.DROPPED._value.get()


def test_predict_rows_are_written_in_batches_and_feedback_finds_them_at_once(published_model, owner, buffered):
    before = dropped()
    issued = create_api_token(project=published_model.project, name="c", created_by=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued.secret}")
    answers = [client.post(f"/api/v1/projects/{published_model.project.slug}/predict", {"text": f"快递第{i}天还没到"},
                           format="json").json() for i in range(5)]  # fmt: skip
    request_ids = [uuid.UUID(answer["request_id"]) for answer in answers]
    feedback = client.post(
        f"/api/v1/projects/{published_model.project.slug}/feedback",
        {"request_id": answers[-1]["request_id"], "outcome": {"key": "resolved"}},
        format="json",
    )
    assert feedback.status_code == 200, feedback.content
    assert feedback.json()["results"][0]["status"] in ("created", "stored"), feedback.json()
    log_writer.close_writer()
    assert set(PredictionLog.objects.values_list("request_id", flat=True)) == set(request_ids)
    assert list(buffered.glob("*.jsonl")) == []  # everything stored: the spool file is gone
    assert dropped() == before


CHILD = textwrap.dedent(
    """
    import signal, sys, uuid
    import django
    django.setup()
    from django.conf import settings
    settings.PREDICTION_LOG_FLUSH_MS = int(sys.argv[4])
    settings.PREDICTION_LOG_SPOOL_DIR = sys.argv[1]
    from django.utils import timezone
    from feedback.models import PredictionLog
    from feedback.services.log_writer import write_prediction_logs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as a gunicorn worker stops: a normal exit
    project_id, n = int(sys.argv[2]), int(sys.argv[3])
    ids = []
    for i in range(n):
        row = PredictionLog(project_id=project_id, request_id=uuid.uuid4(), text_masked=f"text {i}",
                            text_hash="0" * 64, label="a", confidence=0.5, topk=[], latency_ms=1.0)
        write_prediction_logs([row])
        ids.append(str(row.request_id))
    print(" ".join(ids), flush=True)
    signal.pause()
    """
)


def run_child(spool: Path, project_id: int, n: int, flush_ms: int = 60_000) -> tuple[subprocess.Popen, set[uuid.UUID]]:
    """A process that logs n rows through its writer; by default nothing is flushed by time before a signal."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sceneclf_site.settings.test",
           "DATABASE_URL": database_url_for_worker(), "SCENECLF_DATA_DIR": str(settings.DATA_DIR)}  # fmt: skip
    args = [str(spool), str(project_id), str(n), str(flush_ms)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    return child, {uuid.UUID(value) for value in line.split()}


def test_a_stopped_process_stores_its_buffered_rows_at_exit(project, buffered):
    child, ids = run_child(buffered, project.pk, 40)
    assert len(ids) == 40
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    assert set(PredictionLog.objects.values_list("request_id", flat=True)) == ids
    assert list(buffered.glob("*.jsonl")) == []


def test_the_rows_of_a_killed_process_are_replayed_once(project, buffered):
    child, ids = run_child(buffered, project.pk, 40)
    assert len(ids) == 40
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert PredictionLog.objects.count() == 0  # still only in its spool file
    assert len(list(buffered.glob("*.jsonl"))) == 1
    assert log_writer.recover_orphans(buffered) == 40
    assert set(PredictionLog.objects.values_list("request_id", flat=True)) == ids
    assert log_writer.recover_orphans(buffered) == 0 and PredictionLog.objects.count() == 40


def test_a_live_writers_spool_is_left_alone(project, buffered):
    child, ids = run_child(buffered, project.pk, 5)
    try:
        assert log_writer.recover_orphans(buffered) == 0  # its flock is held: the writer is alive
        assert PredictionLog.objects.count() == 0
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
    assert set(PredictionLog.objects.values_list("request_id", flat=True)) == ids


def test_a_replayed_row_keeps_its_request_time(project, buffered):
    child, ids = run_child(buffered, project.pk, 3)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    spooled = {line.split('"request_id": "')[1][:36]: line for path in buffered.glob("*.jsonl")
               for line in path.read_text().splitlines()}  # fmt: skip
    assert set(map(uuid.UUID, spooled)) == ids
    log_writer.recover_orphans(buffered)
    for row in PredictionLog.objects.all():
        assert f'"created_at": "{row.created_at.isoformat()}' in spooled[str(row.request_id)]


def test_a_row_another_process_still_buffers_is_found_by_the_feedback_lookup(project, buffered):
    child, ids = run_child(buffered, project.pk, 1, flush_ms=300)
    try:
        (request_id,) = ids
        found = log_writer.find_prediction_log(request_id)  # waits for the other writer's next flush
        assert found is not None and found.project_id == project.pk
        assert log_writer.find_prediction_log(uuid.uuid4()) is None
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)


def test_the_predictions_page_lists_the_prediction_it_just_made(published_model, client, owner, buffered):
    client.force_login(owner)
    html = client.post("/projects/alpha/predictions/", {"text": "快递没到 电话 13812345678"}).content.decode()
    assert "&lt;PHONE&gt;" in html  # the masked row is in the log list, not only in the buffer
    assert PredictionLog.objects.count() == 1


def test_unknown_request_ids_in_one_feedback_batch_share_one_short_wait(published_model, owner, buffered, settings):
    import time

    settings.PREDICTION_LOG_FLUSH_MS = 200
    issued = create_api_token(project=published_model.project, name="c", created_by=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued.secret}")
    items = [{"request_id": str(uuid.uuid4()), "outcome": {"key": "resolved"}} for _ in range(20)]
    started = time.monotonic()
    response = client.post(f"/api/v1/projects/{published_model.project.slug}/feedback", items, format="json")
    elapsed = time.monotonic() - started
    assert {result["status"] for result in response.json()["results"]} == {"unknown_request_id"}
    assert elapsed < 5  # one window of 2 x 200 ms + 200 ms, not 20 of them (12 s)
