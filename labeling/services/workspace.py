"""Writes of the annotator workspace: submit, skip, undo; settings; and the two entry points through which
modeling hands data to labeling (`set_suggestions`, `set_priorities`) without labeling knowing about models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import (
    AgreementReport,
    Annotation,
    Assignment,
    GoldLabel,
    Item,
    ItemEvent,
    ItemSuggestion,
    Project,
    Skip,
    WorkspaceSettings,
)
from labeling.selectors.workspace import assignment_ttl, target_k, workspace_settings
from labeling.services.assignment import claim_item, claim_next
from labeling.services.gold import DERIVED_METHODS, derive_gold_from_annotations, require_published, validate_label
from labeling.services.history import record_event
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError

MAX_TIME_MS = 10 * 60 * 1000  # more than ten minutes on one short text means the annotator walked away
MAX_SKIP_REASON = 200
MAX_CLIENT_KEY = 64


def next_assignment(*, project: Project, annotator: Any) -> Assignment | None:
    return claim_next(project, annotator)


def _item_in_project(project: Project, item_id: int) -> Item:
    item = Item.objects.filter(project=project, pk=item_id).first()
    if item is None:
        raise NotFoundError(gettext("No item %(item_id)s in this project.") % {"item_id": item_id})
    return item


def _own_assignment(item: Item, annotator: Any) -> Assignment:
    assignment = Assignment.objects.filter(item=item, annotator=annotator, status=Assignment.Status.ACTIVE).first()
    if assignment is None:
        raise ConflictError(
            gettext("This item is not assigned to you any more (it expired or was already done). Load the next item."),
            code="not_assigned",
        )
    return assignment


def clamp_time_ms(time_ms: Any) -> int:
    try:
        value = int(time_ms)
    except (TypeError, ValueError):
        return 0
    return min(max(value, 0), MAX_TIME_MS)


@dataclass(frozen=True)
class Submission:
    annotation: Annotation
    created: bool  # False: a retry of a submission already stored; the stored annotation is returned


def clean_client_key(client_key: Any) -> str:
    key = str(client_key or "").strip()
    if len(key) > MAX_CLIENT_KEY:
        raise ServiceError(
            gettext("Keep the idempotency key under %(max_client_key)s characters.")
            % {"max_client_key": MAX_CLIENT_KEY},
            code="client_key",
        )
    return key


def submit_annotation(
    *, project: Project, annotator: Any, item_id: int, label_key: str, time_ms: Any, client_key: str = ""
) -> Submission:
    """Record the annotator's label on their assigned item; when the item has its k annotations, derive gold.

    Retries are safe: a submission with a client key already used by this annotator, or for an item they already
    labelled with the same label, returns the stored annotation instead of failing (the client may have lost
    the first answer). A different label for an already labelled item is a conflict (undo changes a label).
    Checks that only read run before the write transaction, so the write lock (one writer at a time on
    SQLite) is held only for the writes and the checks they depend on."""
    taxonomy = require_published(project)
    label_key = validate_label(taxonomy, label_key)
    client_key = clean_client_key(client_key)
    item = _item_in_project(project, item_id)
    k = target_k(project, item.text_hash)
    accept_majority = workspace_settings(project).accept_majority
    with transaction.atomic():
        replayed = _earlier_submission(item, annotator, label_key, client_key)
        if replayed is not None:
            return Submission(replayed, created=False)
        assignment = _own_assignment(item, annotator)
        annotation = _create_annotation(item, annotator, label_key, taxonomy, clamp_time_ms(time_ms), client_key)
        assignment.status = Assignment.Status.DONE
        assignment.save(update_fields=["status"])
        _record_annotated(item, annotator, annotation, taxonomy)
        derive_gold_from_annotations(item=item, target_k=k, accept_majority=accept_majority)
        transaction.on_commit(lambda: schedule_agreement_if_due(project.pk))
    return Submission(annotation, created=True)


def _record_annotated(item: Item, annotator: Any, annotation: Annotation, taxonomy: Any) -> None:
    gold = GoldLabel.objects.filter(item=item).first()
    record_event(
        item=item,
        kind=ItemEvent.Kind.ANNOTATED,
        actor=annotator,
        label_before=gold.label_key if gold else "",
        label_after=annotation.label_key,
        detail={"taxonomy_version": taxonomy.number, "time_ms": annotation.time_ms},
    )


def _earlier_submission(item: Item, annotator: Any, label_key: str, client_key: str) -> Annotation | None:
    """The stored annotation this submission repeats, if any; a conflicting repeat raises."""
    if client_key:
        replayed = _replay_by_key(annotator, client_key, item.pk, label_key)
        if replayed is not None:
            return replayed
    # Lock this annotator's slot first (PostgreSQL; SQLite serialises writers), so two copies of one submission
    # cannot both pass the checks below.
    list(Assignment.objects.select_for_update().filter(item=item, annotator=annotator))
    earlier = Annotation.objects.filter(item=item, annotator=annotator).first()
    if earlier is not None and earlier.label_key != label_key:
        raise ConflictError(
            gettext("You already labelled this item with another label; undo it to change the label."),
            code="duplicate_annotation",
        )
    return earlier


def _replay_by_key(annotator: Any, client_key: str, item_id: int, label_key: str) -> Annotation | None:
    earlier = Annotation.objects.filter(annotator=annotator, client_key=client_key).first()
    if earlier is not None and (earlier.item_id != item_id or earlier.label_key != label_key):
        raise ConflictError(
            gettext("This idempotency key was already used for another submission; send a new key."),
            code="client_key_reused",
        )
    return earlier


def _create_annotation(
    item: Item, annotator: Any, label_key: str, taxonomy: Any, time_ms: int, client_key: str
) -> Annotation:
    try:
        with transaction.atomic():
            return Annotation.objects.create(
                item=item,
                annotator=annotator,
                label_key=label_key,
                taxonomy=taxonomy,
                time_ms=time_ms,
                client_key=client_key,
            )
    except IntegrityError as exc:  # the same key sent at the same moment for another item
        raise ConflictError(
            gettext("This idempotency key is in use by another submission."), code="client_key_reused"
        ) from exc


@transaction.atomic
def skip_item(*, project: Project, annotator: Any, item_id: int, reason: str) -> Skip:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(
            gettext("Say why you skip this item (e.g. unclear, not feedback, needs context)."), code="reason"
        )
    if len(reason) > MAX_SKIP_REASON:
        raise ServiceError(
            gettext("Keep the skip reason under %(max_skip_reason)s characters.")
            % {"max_skip_reason": MAX_SKIP_REASON},
            code="reason",
        )
    item = _item_in_project(project, item_id)
    assignment = _own_assignment(item, annotator)
    assignment.delete()
    return Skip.objects.create(item=item, annotator=annotator, reason=reason)


@transaction.atomic
def undo_last(*, project: Project, annotator: Any) -> Item:
    """Take back the annotator's latest label or skip in this project; the item comes back to them next."""
    last_annotation = (
        Annotation.objects.filter(item__project=project, annotator=annotator).order_by("-created_at", "-id").first()
    )
    last_skip = Skip.objects.filter(item__project=project, annotator=annotator).order_by("-created_at", "-id").first()
    if last_annotation is None and last_skip is None:
        raise ServiceError(gettext("Nothing to undo."), code="nothing_to_undo")
    if last_skip is not None and (last_annotation is None or last_skip.created_at >= last_annotation.created_at):
        return _undo_skip(project, annotator, last_skip)
    return _undo_annotation(project, annotator, last_annotation)


def _undo_annotation(project: Project, annotator: Any, annotation: Annotation) -> Item:
    item = annotation.item
    gold = GoldLabel.objects.filter(item=item).first()
    if gold is not None and gold.updated_at < annotation.created_at:
        gold = None  # decided before this annotation (a check item): undoing the annotation leaves it alone
    if gold is not None and gold.method not in DERIVED_METHODS:
        raise ConflictError(
            gettext("This item was already decided (adjudicated or reviewed); it can no longer be undone."),
            code="decided",
        )
    record_event(
        item=item,
        kind=ItemEvent.Kind.ANNOTATION_UNDONE,
        actor=annotator,
        label_before=gold.label_key if gold else "",
        label_after=annotation.label_key,
    )
    if gold is not None:
        gold.delete()
        record_event(
            item=item,
            kind=ItemEvent.Kind.GOLD_REMOVED,
            actor=annotator,
            label_before=gold.label_key,
            reason="An annotation it was derived from was undone.",
            detail={"method_before": gold.method},
        )
    annotation.delete()
    # Re-activate the slot with a fresh expiry: the latest expiry is what the annotator is shown next.
    Assignment.objects.filter(item=item, annotator=annotator).update(
        status=Assignment.Status.ACTIVE, expires_at=timezone.now() + assignment_ttl(project)
    )
    return item


def _undo_skip(project: Project, annotator: Any, skip: Skip) -> Item:
    item = skip.item
    skip.delete()
    claim_item(project, annotator, item)
    return item


MAX_CHECK_ITEM_RATE = 0.5


@transaction.atomic
def update_workspace_settings(*, project: Project, **fields: Any) -> WorkspaceSettings:
    allowed = {"assignment_ttl_minutes", "accept_majority", "agreement_batch_size", "check_item_rate"}
    unknown = set(fields) - allowed
    if unknown:
        raise ServiceError(gettext("Unknown workspace setting(s): %(value)s.") % {"value": ", ".join(sorted(unknown))})
    if "assignment_ttl_minutes" in fields and not 1 <= int(fields["assignment_ttl_minutes"]) <= 24 * 60:
        raise ServiceError(gettext("Assignment expiry must be between 1 minute and 24 hours."))
    if "agreement_batch_size" in fields and int(fields["agreement_batch_size"]) < 1:
        raise ServiceError(gettext("The agreement batch size must be at least 1."))
    if "check_item_rate" in fields and not 0 <= float(fields["check_item_rate"]) <= MAX_CHECK_ITEM_RATE:
        raise ServiceError(
            gettext("The check-item rate is a share between 0 and %(max_rate)s.") % {"max_rate": MAX_CHECK_ITEM_RATE}
        )
    settings_row, _ = WorkspaceSettings.objects.update_or_create(project=project, defaults=fields)
    return settings_row


def _require_items(project: Project, item_ids: Iterable[int]) -> set[int]:
    wanted = {int(item_id) for item_id in item_ids}
    found = set(Item.objects.filter(project=project, pk__in=wanted).values_list("id", flat=True))
    missing = sorted(wanted - found)
    if missing:
        raise ServiceError(
            gettext("%(n_missing)s item id(s) are not in project '%(slug)s'.")
            % {"n_missing": len(missing), "slug": project.slug},
            code="unknown_items",
            details=missing[:20],
        )
    return found


@transaction.atomic
def set_suggestions(
    project: Project, suggestions: Iterable[tuple[int, str, float, list[dict[str, Any]]]], model_ref: str
) -> int:
    """Store a model's suggestion per item: rows of (item_id, label_key, confidence, topk), where topk is
    [{"label": key, "probability": p}, ...]. Replaces earlier suggestions for those items."""
    rows = list(suggestions)
    _require_items(project, [row[0] for row in rows])
    item_ids = [row[0] for row in rows]
    ItemSuggestion.objects.filter(item_id__in=item_ids).delete()
    ItemSuggestion.objects.bulk_create(
        [
            ItemSuggestion(
                item_id=item_id,
                label_key=label_key,
                confidence=float(confidence),
                topk=list(topk or []),
                model_ref=str(model_ref)[:64],
            )
            for item_id, label_key, confidence, topk in rows
        ]
    )
    return len(rows)


@transaction.atomic
def set_priorities(project: Project, scores: Mapping[int, float]) -> int:
    """Active learning's scores: higher means the item is pulled sooner. Items not named keep theirs."""
    _require_items(project, scores.keys())
    # Lock in id order (two concurrent scorings cannot deadlock); NO KEY UPDATE leaves new assignments
    # (which only need a key-share lock on the item) free to proceed.
    items = list(
        Item.objects.filter(project=project, pk__in=list(scores))
        .order_by("id")
        .select_for_update(no_key=True)
        .only("id", "priority")
    )
    for item in items:
        item.priority = float(scores[item.pk])
    Item.objects.bulk_update(items, ["priority"], batch_size=500)
    return len(items)


def schedule_agreement_if_due(project_id: int) -> bool:
    """Queue an agreement computation once `agreement_batch_size` annotations arrived since the last report."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return False
    total = Annotation.objects.filter(item__project=project).count()
    last = AgreementReport.objects.filter(project=project).order_by("-created_at", "-id").first()
    since = total - (last.annotation_count if last else 0)
    if since < workspace_settings(project).agreement_batch_size:
        return False
    from labeling.tasks_agreement import compute_agreement_task  # tasks import services, not the reverse
    from sceneclf_site.queueing import send_task_quietly

    # Labelling never fails on the broker: without it, the next annotation (or the page button) asks again.
    return send_task_quietly(compute_agreement_task, args=[project.pk])
