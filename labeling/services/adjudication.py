"""Adjudication: a reviewer or owner decides items whose k annotations disagree, and items where a review
decision differs from the existing gold label (a `GoldConflict`)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import Annotation, GoldConflict, GoldLabel, Item, ItemEvent, Project
from labeling.services.gold import require_published, set_gold, validate_label
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError


@transaction.atomic
def adjudicate(*, project: Project, item_id: int, label_key: str, decided_by: Any, reason: str = "") -> GoldLabel:
    """The decision becomes the item's gold label (method `adjudicated`) under the latest published taxonomy.
    With open gold conflicts it may replace existing gold (or keep it); they are all settled by it."""
    item = Item.objects.select_for_update().filter(project=project, pk=item_id).first()
    if item is None:
        raise NotFoundError(gettext("No item %(item_id)s in this project.") % {"item_id": item_id})
    taxonomy = require_published(project)
    label_key = validate_label(taxonomy, label_key)
    reason = (reason or "").strip()[:2000]
    conflicts = list(GoldConflict.objects.select_for_update().filter(item=item, status=GoldConflict.Status.OPEN))
    votes = dict(Annotation.objects.filter(item=item).values_list("annotator__username", "label_key"))
    if conflicts:
        gold = set_gold(
            item=item,
            label_key=label_key,
            taxonomy=taxonomy,
            method=GoldLabel.Method.ADJUDICATED,
            decided_by=decided_by,
            event=ItemEvent.Kind.ADJUDICATED,
            reason=reason,
            detail={
                "annotations": votes,
                "conflicts": [
                    {"id": c.pk, "gold": c.gold_label, "proposed": c.proposed_label, "review_task": c.review_task_id}
                    for c in conflicts
                ],
            },
        )
        GoldConflict.objects.filter(pk__in=[c.pk for c in conflicts]).update(
            status=GoldConflict.Status.RESOLVED,
            resolved_label=label_key,
            resolved_by=decided_by,
            resolved_at=timezone.now(),
        )
        return gold
    if len(set(votes.values())) < 2:
        raise ServiceError(gettext("This item has no disagreement to adjudicate."), code="no_disagreement")
    existing = GoldLabel.objects.filter(item=item).first()
    if existing is not None and not existing.needs_recheck:
        raise ConflictError(
            gettext("This item already has a gold label (%(label_key)s, %(method)s).")
            % {"label_key": existing.label_key, "method": existing.method},
            code="already_decided",
        )
    return set_gold(
        item=item,
        label_key=label_key,
        taxonomy=taxonomy,
        method=GoldLabel.Method.ADJUDICATED,
        decided_by=decided_by,
        event=ItemEvent.Kind.ADJUDICATED,
        reason=reason,
        detail={"annotations": votes},
    )
