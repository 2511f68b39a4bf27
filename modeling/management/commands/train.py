"""manage.py train --project SLUG [--route NAME] [--params JSON] [--publish] [--if-no-model]: train any
registered route from the command line.

Runs the same service as the browser's Train button, in this process (no worker needed), and prints the
validation metrics. `make run` uses it to give the demo project a published model from the start."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from labeling.models import Project
from modeling.engine.routes import route_names
from modeling.models import DEFAULT_ROUTE, ModelVersion
from modeling.services.training import execute_training_run, start_training_run
from modeling.services.versions import publish_model_version
from sceneclf_site.api_errors import ServiceError


class Command(BaseCommand):
    help = "Train a model version for a project in this process; optionally publish it."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--route", default=DEFAULT_ROUTE, choices=route_names())
        parser.add_argument("--params", default="{}", help='JSON hyper-parameters, e.g. {"backbone": "NAME"}')
        parser.add_argument("--publish", action="store_true", help="publish the new version")
        parser.add_argument("--if-no-model", action="store_true", help="do nothing when a model is published")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{options['project']}'.")
        if options["if_no_model"] and project.model_versions.filter(status=ModelVersion.Status.PUBLISHED).exists():
            self.stdout.write(f"{project.slug}: a model is already published; nothing to do.")
            return
        try:
            params = json.loads(options["params"])
            run = start_training_run(
                project=project, route=options["route"], params=params, trigger="cli", dispatch=False
            )
        except (ServiceError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{project.slug}: training run {run.id} ({run.route}) ...")
        version_id = execute_training_run(run.id)
        run.refresh_from_db()
        if version_id is None:
            raise CommandError(f"Training run {run.id} ended {run.status}: {run.error or 'no model version'}")
        version = ModelVersion.objects.get(pk=version_id)
        val = version.metrics.get("val", {})
        self.stdout.write(
            f"model v{version.number}: val accuracy {val.get('accuracy', float('nan')):.3f}, "
            f"macro-F1 {val.get('macro_f1', float('nan')):.3f}, temperature {version.temperature:.2f}, "
            f"threshold {version.threshold:.2f}"
        )
        if options["publish"]:
            publish_model_version(version=version)
            self.stdout.write(self.style.SUCCESS(f"model v{version.number} published for {project.slug}"))
