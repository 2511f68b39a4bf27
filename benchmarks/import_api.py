"""Import a labelled JSONL file through the REST API as a background task on a real Celery worker, twice.

    .venv/bin/python benchmarks/import_api.py [--file /work/shared/datasets/cic/train.jsonl] [--json OUT]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_import]

A throw-away data dir (SQLite by default) and Redis db 14 keep it away from real data. The project's
published taxonomy holds the file's labels, so every label becomes a gold label. The second import of the
same file must create nothing."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=Path("/work/shared/datasets/cic/train.jsonl"))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="sceneclf-bench-import-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="sceneclf_site.settings.local", SCENECLF_DATA_DIR=data_dir, REDIS_URL=args.redis_url
    )
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sceneclf_site",
            "worker",
            "-Q",
            "default",
            "-c",
            "1",
            "-n",
            "bench-import@%h",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    try:
        results = run(args.file)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    print(json.dumps(results, indent=1, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run(path: Path) -> dict:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from labeling.services.projects import create_project
    from labeling.services.taxonomy import FALLBACK_KEY, add_label, publish_draft

    owner = get_user_model().objects.create_user(username="bench_owner", password="x")
    project = create_project(slug="bench-import", name="import benchmark", owner=owner)
    draft = project.taxonomy_versions.get(status="draft")
    lines = path.read_bytes()
    labels = sorted({json.loads(line)["label"] for line in lines.decode("utf-8").splitlines() if line.strip()})
    for key in labels:
        if key != FALLBACK_KEY:
            add_label(draft=draft, data={"key": key, "name": key[:100]})
    publish_draft(draft=draft)
    client = APIClient(SERVER_NAME="localhost")
    client.force_authenticate(owner)
    client.get(f"/api/v1/projects/{project.slug}")  # warm up URL resolving and serializers
    runs = [_import_once(client, project.slug, lines) for _ in range(2)]
    return {"file": str(path), "lines": lines.count(b"\n"), "runs": runs}


def _import_once(client, slug: str, content: bytes) -> dict:  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    started = time.perf_counter()
    upload = SimpleUploadedFile("train.jsonl", content)
    response = client.post(f"/api/v1/projects/{slug}/imports", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    accepted = time.perf_counter() - started
    while True:
        job = client.get(f"/api/v1/projects/{slug}/imports/{job_id}").json()
        if job["status"] in {"done", "failed"}:
            break
        time.sleep(0.25)
    return {
        "status": job["status"],
        "accepted_seconds": round(accepted, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        "created": job["created_count"],
        "duplicates": job["duplicate_count"],
        "rejected": job["rejected_count"],
        "gold_labels": job["labeled_count"],
    }


if __name__ == "__main__":
    main()
