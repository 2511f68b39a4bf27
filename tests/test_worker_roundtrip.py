"""A real Celery worker process runs tasks sent over the real Redis broker and writes to the database."""

import io
import json
import time

import pytest

from labeling.models import ImportJob, Item
from labeling.services.imports import enqueue_import, start_import
from labeling.services.projects import create_project
from tests.worker import running_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.2)


def test_worker_imports_a_file_and_health_sees_both_queues(client):
    project = create_project(slug="roundtrip", name="Round trip")
    lines = [json.dumps({"text": f"快递第{i}天还没到，查不到物流"}, ensure_ascii=False) for i in range(25)]
    job = start_import(project=project, content=io.BytesIO("\n".join(lines).encode()), file_name="a.jsonl",
                       enqueue=False)  # fmt: skip

    with running_worker():
        enqueue_import(job.id)
        wait_for(lambda: ImportJob.objects.get(pk=job.id).status in {"done", "failed"})
        health = client.get("/api/v1/health").json()

    job.refresh_from_db()
    assert job.status == "done", job.error
    assert job.created_count == 25
    assert Item.objects.filter(project=project).count() == 25
    assert job.task_id  # the id Celery gave the task
    assert health["worker"]["status"] == "ok", health
    assert set(health["worker"]["queues"]) == {"default", "ml"}
