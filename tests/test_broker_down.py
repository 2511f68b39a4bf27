"""Redis down: starting background work answers with a clear 503, and nothing the user sent is lost."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from kombu import pools

from labeling.models import ImportJob
from sceneclf_site.celery import app


def _drop_cached_connections() -> None:
    # Celery and kombu cache the connection and producer pools built from the broker URL they first saw.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def dead_broker():
    saved = (app.conf.broker_url, app.conf.task_always_eager)
    _drop_cached_connections()
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app.conf.task_always_eager = False
    yield
    _drop_cached_connections()
    app.conf.broker_url, app.conf.task_always_eager = saved


@pytest.mark.django_db(transaction=True)
def test_import_with_the_broker_down_gives_503_and_keeps_the_job(client, owner, project, dead_broker):
    client.force_login(owner)
    upload = SimpleUploadedFile(
        "feedback.jsonl", b'{"text": "\xe9\x80\x80\xe6\xac\xbe\xe8\xbf\x98\xe6\xb2\xa1\xe5\x88\xb0"}\n'
    )
    response = client.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload})
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["error"]["code"] == "broker_unavailable"
    assert "broker" in body["error"]["message"] and "Nothing was lost" in body["error"]["message"]
    job = ImportJob.objects.get(project=project)
    assert job.status == ImportJob.Status.PENDING  # kept, and re-runnable once the broker is back


@pytest.mark.django_db(transaction=True)
def test_a_job_stranded_by_the_outage_is_resumed_once_the_broker_is_back(client, owner, project, dead_broker):
    from datetime import timedelta

    from django.utils import timezone

    from labeling.services.imports import resume_stalled_imports

    client.force_login(owner)
    upload = SimpleUploadedFile("f.jsonl", "\n".join(f'{{"text": "登录不上账号 {i}"}}' for i in range(3)).encode())
    assert client.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}).status_code == 503
    ImportJob.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    app.conf.task_always_eager = True  # the broker is back (tasks run inline here)
    assert len(resume_stalled_imports()) == 1
    job = ImportJob.objects.get(project=project)
    assert job.status == ImportJob.Status.DONE and job.created_count == 3
