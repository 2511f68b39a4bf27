"""The review queue: predictions the model abstained on or was unsure about, and items label-quality checks
flag. A reviewer's decision becomes a gold label with provenance `review`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from labeling.models import GoldLabel, Item, Project, ReviewTask
from labeling.services.gold import fallback_key, require_published, set_gold, validate_label
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError

MAX_COMMENT = 2000


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
) -> ReviewTask:
    """Queue an item for review. topk: [{"label", "probability"}]; neighbours: [{"text", "label",
    "similarity"}]. An open task of the same kind for the item is refreshed rather than duplicated."""
    if kind not in ReviewTask.Kind.values:
        raise ServiceError(f"Unknown review kind '{kind}'. Use one of: {', '.join(ReviewTask.Kind.values)}.")
    if item.project_id != project.pk:
        raise ServiceError("The item belongs to another project.")
    fields = {
        "suggested_label": (suggested_label or "")[:64],
        "confidence": None if confidence is None else float(confidence),
        "topk": list(topk or []),
        "neighbours": list(neighbours or []),
        "model_version_ref": (model_version_ref or "")[:64],
    }
    task = ReviewTask.objects.filter(project=project, item=item, kind=kind, status=ReviewTask.Status.OPEN).first()
    if task is None:
        return ReviewTask.objects.create(project=project, item=item, kind=kind, **fields)
    for name, value in fields.items():
        setattr(task, name, value)
    task.save(update_fields=list(fields))
    return task


@transaction.atomic
def resolve_review_task(
    *, project: Project, task_id: int, resolved_by: Any, action: str, label_key: str = "", comment: str = ""
) -> ReviewTask:
    """action: `confirm` (the suggested label), `correct` (label_key), `out_of_scope` (the fallback label)."""
    task = ReviewTask.objects.select_for_update().filter(project=project, pk=task_id).first()
    if task is None:
        raise NotFoundError(f"No review task {task_id} in this project.")
    if task.status == ReviewTask.Status.RESOLVED:
        raise ConflictError("This review task is already resolved.", code="resolved")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise ServiceError(f"Keep the comment under {MAX_COMMENT} characters.")
    taxonomy = require_published(project)
    if action == "confirm":
        if not task.suggested_label:
            raise ServiceError("There is no suggested label to confirm; choose a label instead.")
        label, resolution = validate_label(taxonomy, task.suggested_label), ReviewTask.Resolution.CONFIRMED
    elif action == "correct":
        label, resolution = validate_label(taxonomy, label_key), ReviewTask.Resolution.CORRECTED
    elif action == "out_of_scope":
        label, resolution = fallback_key(taxonomy), ReviewTask.Resolution.OUT_OF_SCOPE
    else:
        raise ServiceError(f"Unknown action '{action}'. Use confirm, correct or out_of_scope.")
    set_gold(item=task.item, label_key=label, taxonomy=taxonomy, method=GoldLabel.Method.REVIEW, decided_by=resolved_by)
    task.status = ReviewTask.Status.RESOLVED
    task.resolution = resolution
    task.resolved_label = label
    task.comment = comment
    task.resolved_by = resolved_by
    task.resolved_at = timezone.now()
    task.save()
    return task


@transaction.atomic
def recheck_gold(*, project: Project, item_id: int, label_key: str, decided_by: Any) -> GoldLabel:
    """Settle a gold label a taxonomy change marked for re-check: the new label under the latest version."""
    gold = GoldLabel.objects.select_for_update().filter(item__project=project, item_id=item_id).first()
    if gold is None or not gold.needs_recheck:
        raise NotFoundError("This item has no gold label waiting for a re-check.")
    taxonomy = require_published(project)
    label_key = validate_label(taxonomy, label_key)
    return set_gold(
        item=gold.item, label_key=label_key, taxonomy=taxonomy, method=GoldLabel.Method.REVIEW, decided_by=decided_by
    )
