"""The review queue: predictions the model abstained on or was unsure about, and items label-quality checks
flag. A reviewer's decision becomes a gold label with provenance `review` when the item has none; one that
differs from existing gold goes to adjudication (or replaces it only as an explicit override with a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import GoldConflict, GoldLabel, Item, ItemEvent, Project, ReviewTask, TaxonomyVersion
from labeling.services.gold import fallback_key, require_published, set_gold, validate_label
from labeling.services.history import record_event
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError

MAX_COMMENT = 2000
# A reviewed downstream correction keeps its origin in the gold label's method; every other kind is `review`.
GOLD_METHOD_OF_KIND = {ReviewTask.Kind.FEEDBACK: GoldLabel.Method.FEEDBACK}


def create_review_task(
    *,
    project: Project,
    item: Item,
    kind: str,
    suggested_label: str = "",
    confidence: float | None = None,
    topk: list[dict[str, Any]] | None = None,
    neighbours: list[dict[str, Any]] | None = None,
    model_version_ref: str = "",
    risk: float = 0.0,
    source_ref: str = "",
) -> ReviewTask:
    """Queue an item for review. topk: [{"label", "probability"}]; neighbours: [{"text", "label",
    "similarity"}]; a higher `risk` is reviewed sooner. An open task of the same kind for the item is
    refreshed rather than duplicated."""
    if kind not in ReviewTask.Kind.values:
        raise ServiceError(
            gettext("Unknown review kind '%(kind)s'. Use one of: %(value)s.")
            % {"kind": kind, "value": ", ".join(ReviewTask.Kind.values)}
        )
    if item.project_id != project.pk:
        raise ServiceError(gettext("The item belongs to another project."))
    fields = {
        "suggested_label": (suggested_label or "")[:64],
        "confidence": None if confidence is None else float(confidence),
        "topk": list(topk or []),
        "neighbours": list(neighbours or []),
        "model_version_ref": (model_version_ref or "")[:64],
        "risk": float(risk),
        "source_ref": (source_ref or "")[:64],
    }
    task = ReviewTask.objects.filter(project=project, item=item, kind=kind, status=ReviewTask.Status.OPEN).first()
    if task is None:
        return ReviewTask.objects.create(project=project, item=item, kind=kind, **fields)
    for name, value in fields.items():
        setattr(task, name, value)
    task.save(update_fields=list(fields))
    return task


@dataclass(frozen=True)
class ReviewOutcome:
    task: ReviewTask
    # gold_set (the item had none) | gold_confirmed (same as gold) | rechecked (gold awaited a re-check) |
    # overridden (explicit, with a reason) | sent_to_adjudication (differs from gold, which stays)
    outcome: str
    gold: GoldLabel | None
    conflict: GoldConflict | None = None


@transaction.atomic
def resolve_review_task(
    *,
    project: Project,
    task_id: int,
    resolved_by: Any,
    action: str,
    label_key: str = "",
    comment: str = "",
    override: bool = False,
    reason: str = "",
) -> ReviewOutcome:
    """action: `confirm` (the suggested label), `correct` (label_key), `out_of_scope` (the fallback label).

    A decision that differs from the item's existing gold label never replaces it silently: it goes to
    adjudication, unless `override` is set with a `reason`. Every outcome is kept in the item's history."""
    task = ReviewTask.objects.select_for_update().filter(project=project, pk=task_id).first()
    if task is None:
        raise NotFoundError(gettext("No review task %(task_id)s in this project.") % {"task_id": task_id})
    if task.status == ReviewTask.Status.RESOLVED:
        raise ConflictError(gettext("This review task is already resolved."), code="resolved")
    comment, reason = (comment or "").strip(), (reason or "").strip()
    if len(comment) > MAX_COMMENT or len(reason) > MAX_COMMENT:
        raise ServiceError(
            gettext("Keep the comment and the reason under %(max_comment)s characters.") % {"max_comment": MAX_COMMENT}
        )
    if override and not reason:
        raise ServiceError(gettext("Say why you override the existing gold label."), code="override_reason")
    taxonomy = require_published(project)
    label, resolution = _decision(task, taxonomy, action, label_key)
    detail = {"review_task": task.pk, "task_kind": task.kind, "action": action, "comment": comment}
    if task.source_ref:
        detail["source_ref"] = task.source_ref
    gold = GoldLabel.objects.select_for_update().filter(item=task.item).first()
    conflict = None
    if gold is None:
        outcome = "gold_set"
        gold = _review_gold(task, label, taxonomy, resolved_by, ItemEvent.Kind.REVIEWED, comment, detail)
    elif gold.needs_recheck:
        outcome = "rechecked"
        detail["recheck_reason"] = gold.recheck_reason
        gold = _review_gold(task, label, taxonomy, resolved_by, ItemEvent.Kind.RECHECKED, comment, detail)
    elif gold.label_key == label:
        outcome = "gold_confirmed"
        _record_gold_kept(task, gold, label, resolved_by, ItemEvent.Kind.REVIEWED, comment, detail)
    elif override:
        outcome = "overridden"
        gold = _review_gold(task, label, taxonomy, resolved_by, ItemEvent.Kind.OVERRIDDEN, reason, detail)
    else:
        outcome, resolution = "sent_to_adjudication", ReviewTask.Resolution.ADJUDICATION
        conflict = _raise_conflict(task, gold, label, resolved_by, comment, detail)
    task.status = ReviewTask.Status.RESOLVED
    task.resolution = resolution
    task.resolved_label = label
    task.comment = comment or reason
    task.resolved_by = resolved_by
    task.resolved_at = timezone.now()
    task.save()
    return ReviewOutcome(task=task, outcome=outcome, gold=gold, conflict=conflict)


def _decision(task: ReviewTask, taxonomy: TaxonomyVersion, action: str, label_key: str) -> tuple[str, str]:
    if action == "confirm":
        if not task.suggested_label:
            raise ServiceError(gettext("There is no suggested label to confirm; choose a label instead."))
        return validate_label(taxonomy, task.suggested_label), ReviewTask.Resolution.CONFIRMED
    if action == "correct":
        return validate_label(taxonomy, label_key), ReviewTask.Resolution.CORRECTED
    if action == "out_of_scope":
        return fallback_key(taxonomy), ReviewTask.Resolution.OUT_OF_SCOPE
    raise ServiceError(
        gettext("Unknown action '%(action)s'. Use confirm, correct or out_of_scope.") % {"action": action}
    )


def _review_gold(
    task: ReviewTask,
    label: str,
    taxonomy: TaxonomyVersion,
    user: Any,
    event: str,
    reason: str,
    detail: dict[str, Any],
) -> GoldLabel:
    return set_gold(
        item=task.item,
        label_key=label,
        taxonomy=taxonomy,
        method=GOLD_METHOD_OF_KIND.get(task.kind, GoldLabel.Method.REVIEW),
        decided_by=user,
        event=event,
        reason=reason,
        detail=detail,
    )


def _raise_conflict(
    task: ReviewTask, gold: GoldLabel, label: str, user: Any, comment: str, detail: dict[str, Any]
) -> GoldConflict:
    conflict = GoldConflict.objects.create(
        project_id=task.project_id,
        item=task.item,
        gold_label=gold.label_key,
        proposed_label=label,
        proposed_by=user if getattr(user, "pk", None) else None,
        review_task=task,
        comment=comment,
    )
    _record_gold_kept(
        task, gold, label, user, ItemEvent.Kind.REVIEW_CONFLICT, comment, {**detail, "conflict": conflict.pk}
    )
    return conflict


def _record_gold_kept(
    task: ReviewTask, gold: GoldLabel, label: str, user: Any, kind: str, comment: str, detail: dict[str, Any]
) -> None:
    """A review event that leaves the item's gold label as it is."""
    record_event(
        item=task.item,
        kind=kind,
        actor=user,
        label_before=gold.label_key,
        label_after=label,
        reason=comment,
        detail={**detail, "gold_changed": False, "method": gold.method},
    )


@transaction.atomic
def recheck_gold(*, project: Project, item_id: int, label_key: str, decided_by: Any) -> GoldLabel:
    """Settle a gold label a taxonomy change marked for re-check: the new label under the latest version."""
    gold = GoldLabel.objects.select_for_update().filter(item__project=project, item_id=item_id).first()
    if gold is None or not gold.needs_recheck:
        raise NotFoundError(gettext("This item has no gold label waiting for a re-check."))
    taxonomy = require_published(project)
    label_key = validate_label(taxonomy, label_key)
    return set_gold(
        item=gold.item,
        label_key=label_key,
        taxonomy=taxonomy,
        method=GoldLabel.Method.REVIEW,
        decided_by=decided_by,
        event=ItemEvent.Kind.RECHECKED,
        detail={"recheck_reason": gold.recheck_reason},
    )


MAX_BULK_RECHECK = 500


@transaction.atomic
def bulk_recheck_gold(*, project: Project, item_ids: list[int], label_key: str, decided_by: Any) -> list[GoldLabel]:
    """Settle several re-checks with one label: all of them or none. Each item's history gets its own
    `rechecked` event, with its own re-check reason, exactly like a single re-check."""
    wanted = sorted({int(item_id) for item_id in item_ids})
    if not wanted:
        raise ServiceError(gettext("Select at least one item to re-check."), code="no_items")
    if len(wanted) > MAX_BULK_RECHECK:
        raise ServiceError(
            gettext("Re-check at most %(max_bulk_recheck)s items at once.") % {"max_bulk_recheck": MAX_BULK_RECHECK},
            code="too_many_items",
        )
    taxonomy = require_published(project)
    label_key = validate_label(taxonomy, label_key)
    golds = list(
        GoldLabel.objects.select_for_update()
        .filter(item__project=project, item_id__in=wanted, needs_recheck=True)
        .select_related("item")
        .order_by("item_id")
    )
    missing = sorted(set(wanted) - {gold.item_id for gold in golds})
    if missing:
        raise NotFoundError(
            gettext("Items %(value)s have no gold label waiting for a re-check; nothing was changed.")
            % {"value": ", ".join(map(str, missing))},
            details={"item_ids": missing},
        )
    return [
        set_gold(
            item=gold.item,
            label_key=label_key,
            taxonomy=taxonomy,
            method=GoldLabel.Method.REVIEW,
            decided_by=decided_by,
            event=ItemEvent.Kind.RECHECKED,
            detail={"recheck_reason": gold.recheck_reason, "bulk": len(golds)},
        )
        for gold in golds
    ]
