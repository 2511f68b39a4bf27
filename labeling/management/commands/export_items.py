"""manage.py export_items --project SLUG [--format jsonl|csv] [--only-gold] [-o FILE]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Project
from labeling.selectors.items import EXPORT_FORMATS, export_lines


class Command(BaseCommand):
    help = "Export a project's items with their gold labels (label, method, split) as JSONL or CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", dest="fmt", choices=EXPORT_FORMATS, default="jsonl")
        parser.add_argument("--only-gold", action="store_true", help="only items with a gold label")
        parser.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{options['project']}'.")
        lines = export_lines(project, options["fmt"], only_gold=options["only_gold"])
        output = options["output"]
        if output is None:
            for chunk in lines:
                self.stdout.write(chunk, ending="")
            return
        count = 0
        with output.open("w", encoding="utf-8", newline="") as handle:
            for chunk in lines:
                handle.write(chunk)
                count += 1
        rows = count - 1 if options["fmt"] == "csv" else count
        self.stderr.write(f"Wrote {rows} items to {output}")
