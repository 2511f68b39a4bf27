"""Stratified, group-aware train/val/test split over gold-labelled items.

Items whose texts are duplicates or near-duplicates (same `near_duplicate_key`) form one group and always
land on the same side, so the test set never holds a reworded copy of a training text. Within each label,
groups are shuffled with the seed and each goes to the split furthest below its target share.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from django.db import transaction

from labeling.models import Item, Project
from labeling.text import near_duplicate_key
from sceneclf_site.api_errors import ServiceError

SPLITS = (Item.Split.TRAIN.value, Item.Split.VAL.value, Item.Split.TEST.value)


@dataclass(frozen=True)
class SplitResult:
    counts: dict[str, int]  # items per split, "" = unassigned (no gold label)
    per_label: dict[str, dict[str, int]]
    groups: int


def assign_splits(
    *, project: Project, train: float = 0.70, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> SplitResult:
    """Re-assign the split of every item: gold-labelled items to train/val/test, the rest unassigned.
    Deterministic: the same items, ratios and seed give the same split."""
    targets = _normalised_targets(train, val, test)
    labelled = list(
        Item.objects.filter(project=project, gold__isnull=False)
        .order_by("id")
        .values_list("id", "normalized_text", "gold__label_key")
    )
    groups = _groups(labelled)
    assignment = _assign_groups(groups, targets, seed)
    with transaction.atomic():
        Item.objects.filter(project=project).exclude(split="").filter(gold__isnull=True).update(split="")
        for split in SPLITS:
            ids = [item_id for item_id, chosen in assignment.items() if chosen == split]
            for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
                Item.objects.filter(pk__in=ids[start : start + 900]).update(split=split)
    return _summary(project, labelled, assignment, len(groups))


def _normalised_targets(train: float, val: float, test: float) -> dict[str, float]:
    shares = {"train": train, "val": val, "test": test}
    if any(share < 0 for share in shares.values()) or shares["train"] <= 0:
        raise ServiceError("Split shares must be non-negative and train must be above zero.", details=shares)
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()}


def _groups(labelled: list[tuple[int, str, str]]) -> list[tuple[str, list[int]]]:
    """(majority label, item ids) per near-duplicate group, in a stable order."""
    members: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for item_id, normalized, label in labelled:
        members[near_duplicate_key(normalized)].append((item_id, label))
    groups = []
    for key in sorted(members):
        votes = Counter(label for _, label in members[key])
        majority = min(votes, key=lambda label: (-votes[label], label))
        groups.append((majority, [item_id for item_id, _ in members[key]]))
    return groups


def _assign_groups(groups: list[tuple[str, list[int]]], targets: dict[str, float], seed: int) -> dict[int, str]:
    rng = random.Random(seed)
    by_label: dict[str, list[list[int]]] = defaultdict(list)
    for label, ids in groups:
        by_label[label].append(ids)
    assignment: dict[int, str] = {}
    for label in sorted(by_label):
        label_groups = by_label[label]
        rng.shuffle(label_groups)
        # Big groups first, so the small ones can even out the shares afterwards.
        label_groups.sort(key=len, reverse=True)
        size = sum(len(ids) for ids in label_groups)
        filled = dict.fromkeys(SPLITS, 0)
        for ids in label_groups:
            chosen = max(SPLITS, key=lambda split: (targets[split] * size - filled[split], -SPLITS.index(split)))
            filled[chosen] += len(ids)
            assignment.update(dict.fromkeys(ids, chosen))
    return assignment


def _summary(
    project: Project, labelled: list[tuple[int, str, str]], assignment: dict[int, str], groups: int
) -> SplitResult:
    per_label: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for item_id, _, label in labelled:
        per_label[label][assignment[item_id]] += 1
    counts = Counter(assignment.values())
    counts_out = {split: counts.get(split, 0) for split in SPLITS}
    counts_out["unassigned"] = Item.objects.filter(project=project, split="").count()
    return SplitResult(counts=counts_out, per_label=dict(per_label), groups=groups)
