"""Reads of labelled data for training. `modeling` calls these; labeling knows nothing of models."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from labeling.models import GoldLabel, Label, Project, TaxonomyVersion


@dataclass(frozen=True)
class GoldExample:
    item_id: int
    text: str
    text_hash: str
    label_key: str
    split: str


def latest_published_taxonomy(project: Project) -> TaxonomyVersion | None:
    return (
        TaxonomyVersion.objects.filter(project=project, status=TaxonomyVersion.Status.PUBLISHED)
        .order_by("-number")
        .first()
    )


def taxonomy_label_keys(taxonomy: TaxonomyVersion) -> tuple[list[str], str | None]:
    """The label keys of a taxonomy version in display order, and its fallback key."""
    labels = list(Label.objects.filter(taxonomy=taxonomy).order_by("order", "key").values_list("key", "is_fallback"))
    fallback = next((key for key, is_fallback in labels if is_fallback), None)
    return [key for key, _ in labels], fallback


def gold_examples(project: Project, *, label_keys: list[str] | None = None) -> list[GoldExample]:
    """Gold-labelled items of the project with their split, skipping labels that await a re-check.

    With `label_keys`, labels outside that set (e.g. removed from the taxonomy) are skipped too."""
    rows = (
        GoldLabel.objects.filter(item__project=project, needs_recheck=False)
        .select_related("item")
        .order_by("item_id")
        .values_list("item_id", "item__text", "item__text_hash", "label_key", "item__split")
    )
    allowed = set(label_keys) if label_keys is not None else None
    return [
        GoldExample(item_id=item_id, text=text, text_hash=text_hash, label_key=key, split=split)
        for item_id, text, text_hash, key, split in rows
        if allowed is None or key in allowed
    ]


def gold_split_counts(project: Project) -> dict[str, int]:
    """Gold labels per split as training sees them: train / val / test, `unassigned` (no split: not used)
    and `recheck` (waiting for a re-check: not used either)."""
    counts = {"train": 0, "val": 0, "test": 0, "unassigned": 0}
    rows = (
        GoldLabel.objects.filter(item__project=project, needs_recheck=False)
        .values_list("item__split")
        .annotate(n=Count("id"))
    )
    for split, n in rows:
        counts[split or "unassigned"] = n
    counts["recheck"] = GoldLabel.objects.filter(item__project=project, needs_recheck=True).count()
    return counts
