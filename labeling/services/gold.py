"""Writes of gold labels: the only labels training reads. Each carries how it was reached (`method`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from labeling.models import Annotation, GoldLabel, Item, ItemEvent, Label, Project, TaxonomyVersion
from labeling.services.history import record_event
from labeling.services.splits import assign_split
from sceneclf_site.api_errors import ServiceError

# Gold reached from annotations alone: undoing an annotation may take it back.
DERIVED_METHODS = {GoldLabel.Method.SINGLE, GoldLabel.Method.UNANIMOUS, GoldLabel.Method.MAJORITY}
EVENT_OF_METHOD = {
    GoldLabel.Method.IMPORTED: ItemEvent.Kind.IMPORTED,
    GoldLabel.Method.SINGLE: ItemEvent.Kind.GOLD_DERIVED,
    GoldLabel.Method.UNANIMOUS: ItemEvent.Kind.GOLD_DERIVED,
    GoldLabel.Method.MAJORITY: ItemEvent.Kind.GOLD_DERIVED,
    GoldLabel.Method.ADJUDICATED: ItemEvent.Kind.ADJUDICATED,
    GoldLabel.Method.REVIEW: ItemEvent.Kind.REVIEWED,
    GoldLabel.Method.FEEDBACK: ItemEvent.Kind.REVIEWED,
}


def latest_published(project: Project) -> TaxonomyVersion | None:
    return project.taxonomy_versions.filter(status=TaxonomyVersion.Status.PUBLISHED).order_by("-number").first()


def require_published(project: Project) -> TaxonomyVersion:
    taxonomy = latest_published(project)
    if taxonomy is None:
        raise ServiceError(
            gettext("This project has no published taxonomy yet: publish one first."), code="no_taxonomy"
        )
    return taxonomy


def validate_label(taxonomy: TaxonomyVersion, label_key: str) -> str:
    label_key = (label_key or "").strip()
    if not Label.objects.filter(taxonomy=taxonomy, key=label_key).exists():
        raise ServiceError(
            gettext("Label '%(label_key)s' is not in taxonomy v%(number)s.")
            % {"label_key": label_key, "number": taxonomy.number},
            code="unknown_label",
            details=label_key,
        )
    return label_key


def fallback_key(taxonomy: TaxonomyVersion) -> str:
    label = Label.objects.filter(taxonomy=taxonomy, is_fallback=True).first()
    if label is None:
        raise ServiceError(
            gettext("Taxonomy v%(number)s has no fallback label.") % {"number": taxonomy.number}, code="no_fallback"
        )
    return label.key


@transaction.atomic
def set_gold(
    *,
    item: Item,
    label_key: str,
    taxonomy: TaxonomyVersion,
    method: str,
    event: str | None = None,
    decided_by: Any | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> GoldLabel:
    """Create or replace the item's gold label, append the `event` to its history (with the label before)
    and give a new item its split. A new decision clears any re-check mark. Callers decide whether a
    replacement is allowed; this function never runs without leaving a trace. `event` defaults to the
    kind that goes with the method."""
    previous = GoldLabel.objects.select_for_update().filter(item=item).first()
    gold, _ = GoldLabel.objects.update_or_create(
        item=item,
        defaults={
            "label_key": label_key,
            "taxonomy": taxonomy,
            "method": method,
            "decided_by": decided_by,
            "needs_recheck": False,
            "recheck_reason": "",
        },
    )
    record_event(
        item=item,
        kind=event or EVENT_OF_METHOD[method],
        actor=decided_by,
        label_before=previous.label_key if previous else "",
        label_after=label_key,
        reason=reason,
        detail={
            "gold_changed": previous is None or previous.label_key != label_key,
            "method": method,
            "method_before": previous.method if previous else "",
            "taxonomy_version": taxonomy.number,
            **(detail or {}),
        },
    )
    assign_split(item=item, label_key=label_key, actor=decided_by)
    return gold


def majority_label(labels: list[str]) -> str | None:
    """The strict-majority label (more than half of the votes), or None."""
    if not labels:
        return None
    label, votes = Counter(labels).most_common(1)[0]
    return label if votes * 2 > len(labels) else None


def plurality_suggestion(labels: list[str]) -> str | None:
    """The most frequent label when it is unique: offered to adjudicators as a suggestion only."""
    counts = Counter(labels).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


@transaction.atomic
def derive_gold_from_annotations(*, item: Item, target_k: int, accept_majority: bool = False) -> GoldLabel | None:
    """Once an item has its k annotations: unanimous → gold (single when k = 1); a strict majority with
    k >= 3 when the owner accepts it; otherwise nothing (the item waits in the adjudication queue)."""
    if GoldLabel.objects.filter(item=item).exists():
        return None
    annotations = list(Annotation.objects.filter(item=item).select_related("taxonomy", "annotator"))
    if len(annotations) < target_k:
        return None
    labels = [annotation.label_key for annotation in annotations]
    taxonomy = max((annotation.taxonomy for annotation in annotations), key=lambda version: version.number)
    votes = {annotation.annotator.get_username(): annotation.label_key for annotation in annotations}
    majority = majority_label(labels)
    if len(set(labels)) == 1:
        method = GoldLabel.Method.SINGLE if len(labels) == 1 else GoldLabel.Method.UNANIMOUS
        label = labels[0]
    elif accept_majority and len(labels) >= 3 and majority is not None:
        method, label = GoldLabel.Method.MAJORITY, majority
    else:
        return None
    return set_gold(
        item=item,
        label_key=label,
        taxonomy=taxonomy,
        method=method,
        event=ItemEvent.Kind.GOLD_DERIVED,
        detail={"annotations": votes},
    )
