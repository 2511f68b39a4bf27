"""Redis down: starting background work answers with a clear 503 within about a second, nothing the user sent
is lost (runs and imports wait for the queue and are sent when it is back), and labelling never waits.

The web side is pointed at a closed port (nothing listens on port 1) while the database stays shared."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from kombu import pools

from labeling.models import ImportJob
from modeling.models import ModelVersion, TrainingRun
from sceneclf_site import queueing
from sceneclf_site.celery import app
from tests.modeling.conftest import _one_thread_and_own_dirs  # noqa: F401
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts

QUICK_SECONDS = 3.0  # one connection attempt of at most BROKER_CONNECT_TIMEOUT (1 s), plus the request itself


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
    queueing._quiet_skip_until = 0.0


def _broker_back() -> None:
    _drop_cached_connections()
    app.conf.task_always_eager = True  # the broker is back (tasks run inline here)


@pytest.mark.django_db(transaction=True)
def test_import_with_the_broker_down_gives_503_and_keeps_the_job(client, owner, project, dead_broker):
    client.force_login(owner)
    upload = SimpleUploadedFile(
        "feedback.jsonl", b'{"text": "\xe9\x80\x80\xe6\xac\xbe\xe8\xbf\x98\xe6\xb2\xa1\xe5\x88\xb0"}\n'
    )
    client.get(f"/api/v1/projects/{project.slug}/training-runs")  # loads the URLconf and views first
    started = time.monotonic()
    response = client.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload})
    assert time.monotonic() - started < QUICK_SECONDS
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


@pytest.fixture
def trainable(project):
    project.retrain_every_n_gold = 1_000_000
    project.save(update_fields=["retrain_every_n_gold"])
    add_gold_items(project, scene_texts(20), publish_scene_taxonomy(project))
    return project


def _start_tfidf(client, project):
    started = time.monotonic()
    response = client.post(
        f"/api/v1/projects/{project.slug}/training-runs", {"route": "tfidf"}, content_type="application/json"
    )
    return response, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_training_start_with_the_broker_down_waits_for_the_queue_and_never_blocks(
    client, owner, trainable, dead_broker
):
    client.force_login(owner)
    response, seconds = _start_tfidf(client, trainable)
    assert response.status_code == 503, response.content
    assert seconds < QUICK_SECONDS
    error = response.json()["error"]
    assert error["code"] == "broker_unavailable" and "Nothing was lost" in error["message"]
    first = TrainingRun.objects.get(pk=error["details"]["run_id"])
    assert first.status == TrainingRun.Status.WAITING

    # Trying again is never a 409: the newer start replaces the run that still waits.
    again, _ = _start_tfidf(client, trainable)
    assert again.status_code == 503, again.content
    first.refresh_from_db()
    assert first.status == TrainingRun.Status.CANCELLED
    waiting = TrainingRun.objects.get(status=TrainingRun.Status.WAITING)

    _broker_back()
    from modeling.services.training import requeue_waiting_runs

    assert requeue_waiting_runs(older_than_seconds=0) == [waiting.pk]
    waiting.refresh_from_db()
    assert waiting.status == TrainingRun.Status.SUCCEEDED, waiting.error
    assert ModelVersion.objects.filter(run=waiting).exists()


@pytest.mark.django_db(transaction=True)
def test_requeue_leaves_runs_waiting_while_the_broker_is_still_down(client, owner, trainable, dead_broker):
    from modeling.services.training import requeue_waiting_runs

    client.force_login(owner)
    assert _start_tfidf(client, trainable)[0].status_code == 503
    assert requeue_waiting_runs(older_than_seconds=0) == []
    assert TrainingRun.objects.get().status == TrainingRun.Status.WAITING


@pytest.mark.django_db(transaction=True)
def test_labelling_never_waits_for_the_broker(project, dead_broker):
    from django.utils import timezone

    from labeling.services.gold import set_gold
    from labeling.services.items import get_or_create_item

    project.retrain_every_n_gold = 10  # the 10th gold label makes a retrain due
    project.save(update_fields=["retrain_every_n_gold"])
    taxonomy = publish_scene_taxonomy(project)
    # An earlier TF-IDF run: the retrain keeps its route.
    TrainingRun.objects.create(project=project, route="tfidf", status="succeeded", finished_at=timezone.now())
    seconds = []
    for i, (text, label) in enumerate(scene_texts(20)):
        item, _ = get_or_create_item(project=project, text=text, source="test")
        item.split = {0: "val", 1: "test"}.get(i % 5, "train")
        item.save(update_fields=["split"])
        started = time.monotonic()
        set_gold(item=item, label_key=label, taxonomy=taxonomy, method="imported")  # commits, runs the check
        seconds.append(time.monotonic() - started)
    assert max(seconds) < 2.0, max(seconds)  # the label that starts the retrain also collects its data
    assert sorted(seconds)[len(seconds) // 2] < 0.2

    run = TrainingRun.objects.get(trigger="auto_retrain")
    assert run.status == TrainingRun.Status.WAITING  # one attempt; later labels saw an active run and sent nothing

    _broker_back()
    from modeling.services.training import requeue_waiting_runs

    assert requeue_waiting_runs(older_than_seconds=0) == [run.pk]
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path",
    [
        "/projects/alpha/agreement/recompute/",
        "/projects/alpha/active-learning/rescore/",
        "/projects/alpha/active-learning/label-check/",
    ],
)
def test_background_buttons_answer_503_quickly(client, owner, project, dead_broker, path):
    client.force_login(owner)
    started = time.monotonic()
    response = client.post(path)
    assert time.monotonic() - started < QUICK_SECONDS
    assert response.status_code == 503
    assert "broker" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_separate_web_process_on_a_dead_broker_answers_503_and_the_run_waits(client, owner, trainable, tmp_path):
    """The real thing: a web process whose REDIS_URL points at a closed port, sharing the database."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from django.conf import settings as django_settings

    from tests.worker import ROOT, database_url_for_worker

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sceneclf_site.settings.local",
        "DATABASE_URL": database_url_for_worker(),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "SCENECLF_DATA_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client.force_login(owner)  # the session row is in the shared database
    csrf = "a" * 32
    headers = {
        "Cookie": f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}; "
        f"{django_settings.CSRF_COOKIE_NAME}={csrf}",
        "X-CSRFToken": csrf,
        "Content-Type": "application/json",
    }
    url = f"http://127.0.0.1:{port}/api/v1/projects/{trainable.slug}/training-runs"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
            except urllib.error.HTTPError:
                break  # it answers (503: the broker is down)
            except OSError:
                assert server.poll() is None, "the web process exited"
                assert time.monotonic() < deadline, "the web process did not start"
                time.sleep(0.3)
            else:
                break
        request = urllib.request.Request(url, data=b'{"route": "tfidf"}', headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError):  # the first request also imports the ML engine
            urllib.request.urlopen(request, timeout=60)
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)
        seconds = time.monotonic() - started
        status, body = answer.value.code, json.loads(answer.value.read())
    finally:
        server.terminate()
        server.wait(timeout=20)

    assert status == 503
    print(f"separate web process, dead broker: POST training-runs answered 503 in {seconds:.3f} s")
    assert body["error"]["code"] == "broker_unavailable"
    assert seconds < QUICK_SECONDS, seconds
    run = TrainingRun.objects.get(pk=body["error"]["details"]["run_id"])
    assert run.status == TrainingRun.Status.WAITING  # committed by the other process, ready to be re-sent
    assert TrainingRun.objects.filter(status=TrainingRun.Status.CANCELLED).count() == 1  # replaced, not a 409
