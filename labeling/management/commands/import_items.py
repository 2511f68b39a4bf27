"""manage.py import_items --project SLUG FILE [--source S] [--encoding E] [--fallback-alias L ...]
[--wait | --inline]"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from labeling.models import ImportJob, Project
from labeling.selectors.imports import rejection_groups
from labeling.services.imports import run_import, start_import
from sceneclf_site.api_errors import ServiceError


class Command(BaseCommand):
    help = "Import a JSONL, CSV or XLSX file of feedback texts into a project (as a background import job)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--source", default="", help="source tag stored on each item (default: file name)")
        parser.add_argument("--encoding", default="", help="file encoding, e.g. gb18030, big5 (default: detect)")
        parser.add_argument(
            "--fallback-alias", action="append", default=[], help="a dataset label meaning the fallback (repeatable)"
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--wait", action="store_true", help="queue the job, then wait for a worker to finish it")
        mode.add_argument("--inline", action="store_true", help="run the job in this process (no worker needed)")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{options['project']}'.")
        inline = options["inline"]
        try:
            with transaction.atomic(), path.open("rb") as handle:
                job = start_import(
                    project=project,
                    content=handle,
                    file_name=path.name,
                    source=options["source"],
                    enqueue=not inline,
                    encoding=options["encoding"],
                    fallback_aliases=options["fallback_alias"],
                )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        if inline:
            job = run_import(job.pk)
        elif options["wait"]:
            job = self._wait(job)
        else:
            self.stdout.write(
                f"Queued import job {job.pk}. Check it at /api/v1/projects/{project.slug}/imports/{job.pk}"
            )
            return
        self._report(job)

    def _wait(self, job: ImportJob) -> ImportJob:
        last = -1
        started = time.monotonic()
        hinted = False
        while True:
            job.refresh_from_db()
            if job.processed_lines != last:
                last = job.processed_lines
                self.stdout.write(f"  {job.status}: {job.processed_lines}/{job.total_lines or '?'} lines")
            if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
                return job
            if not hinted and job.status == ImportJob.Status.PENDING and time.monotonic() - started > 15:
                hinted = True
                self.stdout.write("  still pending: is a Celery worker for queue 'default' running? (or use --inline)")
            time.sleep(1)

    def _report(self, job: ImportJob) -> None:
        if job.status == ImportJob.Status.FAILED:
            raise CommandError(f"Import job {job.pk} failed: {job.error}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Import job {job.pk} done: {job.created_count} created, {job.duplicate_count} duplicates, "
                f"{job.conflict_count} conflicts, {job.rejected_count} rejected, {job.labeled_count} gold labels."
            )
        )
        # Grouped by reason and label: 2,000 lines of one unknown label are one line here.
        for group in rejection_groups(job):
            more = f" and {group.more} more" if group.more else ""
            lines = ", ".join(map(str, group.lines))
            self.stdout.write(f"  {group.count} × {group.example} (lines {lines}{more})")
        if job.rejections:
            self.stdout.write(f"  every line: /api/v1/projects/{job.project.slug}/imports/{job.pk}")
