"""Check items ("honeypots"): gold items an owner chooses, mixed into annotators' queues at the workspace's
rate without telling them, so each annotator gets a score against known answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import Annotation, Assignment, CheckItem, GoldLabel, Item, Project, Skip
from labeling.selectors.workspace import assignment_ttl, stable_fraction, workspace_settings
from sceneclf_site.api_errors import ServiceError

MAX_MARKED = 500


def _ids(item_ids: Iterable[Any]) -> list[int]:
    try:
        wanted = sorted({int(item_id) for item_id in item_ids})
    except (TypeError, ValueError):
        raise ServiceError(gettext("Item ids must be numbers."), code="invalid_items") from None
    if not wanted:
        raise ServiceError(gettext("Select at least one item."), code="no_items")
    if len(wanted) > MAX_MARKED:
        raise ServiceError(
            gettext("Mark at most %(max_marked)s items at once.") % {"max_marked": MAX_MARKED}, code="too_many_items"
        )
    return wanted


@transaction.atomic
def mark_check_items(*, project: Project, item_ids: Iterable[Any], actor: Any) -> list[CheckItem]:
    """Gold items (not waiting for a re-check) become check items; items already marked stay as they are."""
    wanted = _ids(item_ids)
    usable = set(
        GoldLabel.objects.filter(item__project=project, item_id__in=wanted, needs_recheck=False).values_list(
            "item_id", flat=True
        )
    )
    refused = [item_id for item_id in wanted if item_id not in usable]
    if refused:
        raise ServiceError(
            gettext("Only items with a settled gold label can be check items; not: %(value)s.")
            % {"value": ", ".join(map(str, refused[:20]))},
            code="no_gold",
        )
    marked = set(CheckItem.objects.filter(item_id__in=wanted).values_list("item_id", flat=True))
    actor = actor if getattr(actor, "pk", None) else None
    return CheckItem.objects.bulk_create(
        [CheckItem(project=project, item_id=item_id, created_by=actor) for item_id in wanted if item_id not in marked]
    )


@transaction.atomic
def unmark_check_items(*, project: Project, item_ids: Iterable[Any]) -> int:
    deleted, _ = CheckItem.objects.filter(project=project, item_id__in=_ids(item_ids)).delete()
    return deleted


def check_item_due(project: Project, annotator: Any) -> bool:
    """Whether the annotator's next item is a check item: a stable draw per (annotator, position in their
    work), so the share matches the rate and a reload does not change the answer."""
    rate = workspace_settings(project).check_item_rate
    if rate <= 0 or not CheckItem.objects.filter(project=project).exists():
        return False
    done = Annotation.objects.filter(item__project=project, annotator=annotator).count()
    return stable_fraction("check-item", project.pk, annotator.pk, done) < rate


def claim_check_item(project: Project, annotator: Any) -> Assignment | None:
    """A slot on a check item this annotator has not seen, beyond the item's k slots (it has its gold)."""
    candidates = (
        Item.objects.filter(project=project, check_item__isnull=False)
        .exclude(annotations__annotator=annotator)
        .exclude(skips__annotator=annotator)
        .exclude(assignments__annotator=annotator)
        .values_list("id", "text_hash")
    )
    ordered = sorted(candidates, key=lambda row: stable_fraction("check-order", annotator.pk, row[1]))
    for item_id, _ in ordered[:5]:
        try:
            with transaction.atomic():
                return _extra_slot(project, annotator, item_id)
        except IntegrityError:
            continue  # another annotator took that slot number a moment ago
    return None


def _extra_slot(project: Project, annotator: Any, item_id: int) -> Assignment | None:
    if Skip.objects.filter(item_id=item_id, annotator=annotator).exists():
        return None
    slots = list(Assignment.objects.filter(item_id=item_id).values_list("slot", flat=True))
    return Assignment.objects.create(
        item_id=item_id,
        slot=max(slots, default=-1) + 1,
        annotator=annotator,
        expires_at=timezone.now() + assignment_ttl(project),
    )
