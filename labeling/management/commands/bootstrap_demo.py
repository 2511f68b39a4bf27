"""manage.py bootstrap_demo: the demo project 客服反馈场景 with its taxonomy, 375 feedback texts, users and a split.

Idempotent: a second run finds everything in place and creates nothing new. Items go through the same
import service as user uploads (masking, de-duplication, gold labels)."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

import labeling
from labeling.models import Project, Role
from labeling.selectors.items import latest_published_taxonomy
from labeling.services.imports import run_import, start_import
from labeling.services.projects import add_member, create_project
from labeling.services.splits import assign_splits
from labeling.services.taxonomy import import_taxonomy, publish_draft

DEMO_DIR = Path(labeling.__file__).resolve().parent / "demo"
SLUG = "demo"
NAME = "客服反馈场景"
PASSWORD = "sceneclf-demo"
USERS = {
    "demo_owner": Role.OWNER,
    "demo_annotator": Role.ANNOTATOR,
    "demo_annotator2": Role.ANNOTATOR,
    "demo_reviewer": Role.REVIEWER,
}


class Command(BaseCommand):
    help = "Create (or complete) the demo project, its users, taxonomy, feedback texts and split."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        users = self._users()
        project = self._project(users)
        self._taxonomy(project)
        self._items(project)
        result = assign_splits(project=project, seed=options["seed"])
        counts = result.counts
        self.stdout.write(
            f"Split: train {counts['train']}, val {counts['val']}, test {counts['test']}, "
            f"unassigned (no label yet) {counts['unassigned']}."
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: project '{project.name}' (slug {project.slug}). Log in as "
                f"{', '.join([*USERS, 'admin'])} with password '{PASSWORD}'."
            )
        )

    def _users(self) -> dict[str, object]:
        User = get_user_model()
        users = {}
        for username in [*USERS, "admin"]:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(PASSWORD)
                if username == "admin":
                    user.is_staff = user.is_superuser = True
                user.save()
            users[username] = user
            self.stdout.write(f"User {username}: {'created' if created else 'exists'}")
        return users

    @transaction.atomic
    def _project(self, users: dict[str, object]) -> Project:
        project = Project.objects.filter(slug=SLUG).first()
        if project is None:
            project = create_project(
                slug=SLUG,
                name=NAME,
                description="演示项目：把用户反馈分到旅行、支付、物流、售后、账户和其他六个场景。",
                language="zh-hans",
                overlap_k=1,
                agreement_share=0.1,
            )
            self.stdout.write(f"Project {SLUG}: created")
        else:
            self.stdout.write(f"Project {SLUG}: exists")
        for username, role in USERS.items():
            add_member(project=project, user=users[username], role=role)
        return project

    def _taxonomy(self, project: Project) -> None:
        published = latest_published_taxonomy(project)
        if published is not None:
            self.stdout.write(f"Taxonomy: v{published.number} already published")
            return
        text = (DEMO_DIR / "taxonomy.yaml").read_text(encoding="utf-8")
        draft = import_taxonomy(project=project, text=text, fmt="yaml", replace_draft=True)
        version = publish_draft(draft=draft).version
        self.stdout.write(f"Taxonomy: v{version.number} published with {version.labels.count()} labels")

    def _items(self, project: Project) -> None:
        path = DEMO_DIR / "feedback.jsonl"
        with path.open("rb") as handle:
            job = start_import(project=project, content=handle, file_name=path.name, source="demo", enqueue=False)
        job = run_import(job.pk)  # in this process: the demo must not depend on a running worker
        self.stdout.write(
            f"Import: {job.created_count} items created, {job.duplicate_count} already there, "
            f"{job.rejected_count} rejected, {job.labeled_count} gold labels"
        )
        for rejection in job.rejections:
            self.stdout.write(self.style.WARNING(f"  line {rejection['line']}: {rejection['reason']}"))
