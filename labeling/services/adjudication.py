"""Adjudication: a reviewer or owner decides items whose k annotations disagree."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from labeling.models import Annotation, GoldLabel, Item, Project
from labeling.services.gold import require_published, set_gold, validate_label
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError


@transaction.atomic
def adjudicate(*, project: Project, item_id: int, label_key: str, decided_by: Any) -> GoldLabel:
    """The decision becomes the item's gold label (method `adjudicated`) under the latest published taxonomy."""
    item = Item.objects.select_for_update().filter(project=project, pk=item_id).first()
    if item is None:
        raise NotFoundError(f"No item {item_id} in this project.")
    taxonomy = require_published(project)
    label_key = validate_label(taxonomy, label_key)
    if Annotation.objects.filter(item=item).values("label_key").distinct().count() < 2:
        raise ServiceError("This item has no disagreement to adjudicate.", code="no_disagreement")
    existing = GoldLabel.objects.filter(item=item).first()
    if existing is not None and not existing.needs_recheck:
        raise ConflictError(
            f"This item already has a gold label ({existing.label_key}, {existing.method}).", code="already_decided"
        )
    return set_gold(
        item=item, label_key=label_key, taxonomy=taxonomy, method=GoldLabel.Method.ADJUDICATED, decided_by=decided_by
    )
