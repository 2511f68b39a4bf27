"""What becomes of the lines an import held back for their unknown label: the owner adds the labels to the
taxonomy draft (and runs the lines again once it is published), imports the texts without a label (for
labelling), or rejects them. Held lines are masked like items, so no raw personal data waits here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils.translation import gettext

from labeling.models import ImportHeldLine, ImportJob
from labeling.selectors.items import latest_published_taxonomy
from labeling.services.imports import LabelResolver, ParsedLine, store_lines
from labeling.services.taxonomy import add_label, get_or_create_draft
from sceneclf_site.api_errors import ServiceError


@dataclass(frozen=True)
class HeldOutcome:
    lines: int  # held lines this action settled
    created: int = 0
    labeled: int = 0
    conflicts: int = 0
    still_held: int = 0  # lines whose label is still not in the published taxonomy
    labels_added: list[str] = field(default_factory=list)  # keys that joined the taxonomy draft


def _held(job: ImportJob, labels: Iterable[str] | None) -> list[ImportHeldLine]:
    lines = ImportHeldLine.objects.select_for_update().filter(job=job, status=ImportHeldLine.Status.HELD)
    if labels is not None:
        wanted = {label for label in labels if label}
        if not wanted:
            raise ServiceError(gettext("Choose at least one label."), code="no_labels")
        lines = lines.filter(label__in=wanted)
    return list(lines.order_by("line"))


def _require_finished(job: ImportJob) -> None:
    if job.status != ImportJob.Status.DONE:
        raise ServiceError(gettext("Wait until the import has finished."), code="import_running")


@transaction.atomic
def add_held_labels_to_draft(*, job: ImportJob, labels: list[str]) -> HeldOutcome:
    """The unknown labels as new labels of the taxonomy draft (created from the latest published version if
    there is none). Labels the draft already has are left as they are; the lines stay held until a run."""
    _require_finished(job)
    held = {line.label for line in _held(job, labels)}
    draft = get_or_create_draft(project=job.project)
    present = set(draft.labels.values_list("key", flat=True))
    added = [add_label(draft=draft, data={"key": label, "name": label}).key for label in sorted(held - present)]
    return HeldOutcome(lines=0, labels_added=added)


def _store(job: ImportJob, lines: list[ImportHeldLine], with_label: bool) -> tuple[HeldOutcome, list[int]]:
    taxonomy = latest_published_taxonomy(job.project)
    resolver = LabelResolver.for_taxonomy(taxonomy, job.fallback_aliases)
    ready = [line for line in lines if not with_label or resolver.resolve(line.label) is not None]
    parsed = [
        ParsedLine(
            line=line.line,
            text=line.text,
            label=line.label if with_label else None,
            external_id=line.external_id,
            metadata=line.metadata,
        )
        for line in ready
    ]
    result = store_lines(job, parsed, taxonomy, resolver, set())
    ImportJob.objects.filter(pk=job.pk).update(
        created_count=job.created_count + result.created,
        labeled_count=job.labeled_count + result.labeled,
        duplicate_count=job.duplicate_count + result.duplicates,
        conflict_count=job.conflict_count + result.conflicts,
    )
    # A line can fail now for its text (e.g. the project's length limit went down): it stays held.
    refused = {rejection["line"] for rejection in result.rejections}
    done = [line.pk for line in ready if line.line not in refused]
    outcome = HeldOutcome(
        lines=len(done),
        created=result.created,
        labeled=result.labeled,
        conflicts=result.conflicts,
        still_held=len(lines) - len(done),
    )
    return outcome, done


@transaction.atomic
def rerun_held_lines(*, job: ImportJob) -> HeldOutcome:
    """Run the held lines again against the latest published taxonomy: those whose label it now has are
    imported with their label; the others stay held."""
    _require_finished(job)
    lines = _held(job, None)
    outcome, done = _store(job, lines, with_label=True)
    ImportHeldLine.objects.filter(pk__in=done).update(status=ImportHeldLine.Status.IMPORTED)
    return outcome


@transaction.atomic
def import_held_without_label(*, job: ImportJob, labels: list[str]) -> HeldOutcome:
    """The texts of the held lines with these labels become items without gold, for annotators to label."""
    _require_finished(job)
    outcome, done = _store(job, _held(job, labels), with_label=False)
    ImportHeldLine.objects.filter(pk__in=done).update(status=ImportHeldLine.Status.UNLABELED)
    return outcome


@transaction.atomic
def reject_held_lines(*, job: ImportJob, labels: list[str]) -> HeldOutcome:
    """Drop the held lines with these labels for good; their texts are erased."""
    _require_finished(job)
    ids = [line.pk for line in _held(job, labels)]
    ImportHeldLine.objects.filter(pk__in=ids).update(
        status=ImportHeldLine.Status.REJECTED, text="", external_id="", metadata={}
    )
    return HeldOutcome(lines=len(ids))


HELD_ACTIONS = ("add_to_draft", "rerun", "without_label", "reject")


def held_action(*, job: ImportJob, action: str, labels: list[str]) -> HeldOutcome:
    """One entry point for the page's buttons."""
    actions = {
        "add_to_draft": add_held_labels_to_draft,
        "without_label": import_held_without_label,
        "reject": reject_held_lines,
    }
    if action == "rerun":
        return rerun_held_lines(job=job)
    if action not in actions:
        raise ServiceError(
            gettext("Unknown action '%(action)s'. Use add_to_draft, rerun, without_label or reject.")
            % {"action": action[:40]},
            code="unknown_action",
        )
    return actions[action](job=job, labels=labels)
