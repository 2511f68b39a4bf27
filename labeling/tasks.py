"""Celery tasks of the labeling app (queue `default`). Thin: each calls a service."""

from __future__ import annotations

from celery import shared_task

from labeling.services import imports


@shared_task(name="labeling.tasks.run_import")
def run_import(job_id: int) -> dict[str, int | str]:
    job = imports.run_import(job_id)
    return {
        "job_id": job.pk,
        "status": job.status,
        "created": job.created_count,
        "duplicates": job.duplicate_count,
        "rejected": job.rejected_count,
        "labeled": job.labeled_count,
    }


@shared_task(name="labeling.tasks.resume_stalled_imports")
def resume_stalled_imports() -> list[int]:
    return imports.resume_stalled_imports()


from labeling import tasks_agreement  # noqa: E402, F401
