"""Writes of gold labels: the only labels training reads. Each carries how it was reached (`method`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db import transaction

from labeling.models import Annotation, GoldLabel, Item, Label, Project, TaxonomyVersion
from sceneclf_site.api_errors import ServiceError

# Gold reached from annotations alone: undoing an annotation may take it back.
DERIVED_METHODS = {GoldLabel.Method.SINGLE, GoldLabel.Method.UNANIMOUS, GoldLabel.Method.MAJORITY}


def latest_published(project: Project) -> TaxonomyVersion | None:
    return project.taxonomy_versions.filter(status=TaxonomyVersion.Status.PUBLISHED).order_by("-number").first()


def require_published(project: Project) -> TaxonomyVersion:
    taxonomy = latest_published(project)
    if taxonomy is None:
        raise ServiceError("This project has no published taxonomy yet: publish one first.", code="no_taxonomy")
    return taxonomy


def validate_label(taxonomy: TaxonomyVersion, label_key: str) -> str:
    label_key = (label_key or "").strip()
    if not Label.objects.filter(taxonomy=taxonomy, key=label_key).exists():
        raise ServiceError(
            f"Label '{label_key}' is not in taxonomy v{taxonomy.number}.", code="unknown_label", details=label_key
        )
    return label_key


def fallback_key(taxonomy: TaxonomyVersion) -> str:
    label = Label.objects.filter(taxonomy=taxonomy, is_fallback=True).first()
    if label is None:
        raise ServiceError(f"Taxonomy v{taxonomy.number} has no fallback label.", code="no_fallback")
    return label.key


def set_gold(
    *, item: Item, label_key: str, taxonomy: TaxonomyVersion, method: str, decided_by: Any | None = None
) -> GoldLabel:
    """Create or replace the item's gold label; a new decision clears any re-check mark."""
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
    annotations = list(Annotation.objects.filter(item=item).select_related("taxonomy"))
    if len(annotations) < target_k:
        return None
    labels = [annotation.label_key for annotation in annotations]
    taxonomy = max((annotation.taxonomy for annotation in annotations), key=lambda version: version.number)
    if len(set(labels)) == 1:
        method = GoldLabel.Method.SINGLE if len(labels) == 1 else GoldLabel.Method.UNANIMOUS
        return set_gold(item=item, label_key=labels[0], taxonomy=taxonomy, method=method)
    majority = majority_label(labels)
    if accept_majority and len(labels) >= 3 and majority is not None:
        return set_gold(item=item, label_key=majority, taxonomy=taxonomy, method=GoldLabel.Method.MAJORITY)
    return None
