"""Stratified, group-aware train/val/test split over gold-labelled items, assigned once and never moved.

An item gets its split when it first gets a gold label (`assign_split`, called by `set_gold` and the import),
and keeps it for good: versions trained months apart are compared on the same validation and test items.
Items whose texts are duplicates or near-duplicates (same `group_key`) always land on the same side, so the
test set never holds a reworded copy of a training text. Otherwise each new item (or near-duplicate group)
goes, within its label, to the split furthest below its target share, counting the items already placed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils.translation import gettext

from labeling.models import GoldLabel, Item, ItemEvent, Project, WorkspaceSettings
from labeling.selectors.workspace import workspace_settings
from labeling.services.history import record_event, record_events
from labeling.text import near_duplicate_group
from sceneclf_site.api_errors import ServiceError

SPLITS = (Item.Split.TRAIN.value, Item.Split.VAL.value, Item.Split.TEST.value)
BATCH = 900  # stay under SQLite's bound-parameter limit


@dataclass(frozen=True)
class SplitResult:
    counts: dict[str, int]  # items per split, "unassigned" = no split (no gold label yet)
    per_label: dict[str, dict[str, int]]  # gold items per label and split
    groups: int  # near-duplicate groups among the newly assigned items
    assigned: int  # items that got a split in this call


def split_targets(project: Project) -> dict[str, float]:
    row = workspace_settings(project)
    return _normalised_targets(row.split_train, row.split_val, row.split_test)


@transaction.atomic
def assign_split(*, item: Item, label_key: str, actor: Any | None = None) -> str:
    """Give a newly gold-labelled item its split (a no-op when it has one): the split of a near-duplicate
    that already has one, else the split of its label that is furthest below target."""
    key = item.group_key or near_duplicate_group(item.normalized_text)
    _lock_group(item.project_id, key)
    # Read from the table, not the instance: the caller's copy may predate an assignment.
    current = Item.objects.filter(pk=item.pk).values_list("split", flat=True).first()
    if current:
        item.split = current
        return current
    peer = (
        Item.objects.filter(project_id=item.project_id, group_key=key)
        .exclude(split="")
        .exclude(pk=item.pk)
        .order_by("id")
        .values_list("split", flat=True)
        .first()
    )
    if peer:
        split, why = peer, "near_duplicate"
    else:
        filled = _filled_per_label(item.project_id, [label_key])[label_key]
        split, why = _furthest_below(split_targets(item.project), filled, 1), "stratified"
    Item.objects.filter(pk=item.pk).update(split=split, group_key=key)
    item.split, item.group_key = split, key
    record_event(item=item, kind=ItemEvent.Kind.SPLIT_ASSIGNED, actor=actor, detail={"split": split, "by": why})
    return split


def assign_splits(
    *,
    project: Project,
    train: float | None = None,
    val: float | None = None,
    test: float | None = None,
    seed: int = 0,
    actor: Any | None = None,
) -> SplitResult:
    """Give every gold-labelled item without a split its split; items that have one keep it. Shares, when
    given, become the project's targets for items labelled from now on (a share not given keeps its
    current value). Deterministic for a seed."""
    if train is not None or val is not None or test is not None:
        stored = workspace_settings(project)
        shares = _normalised_targets(
            stored.split_train if train is None else train,
            stored.split_val if val is None else val,
            stored.split_test if test is None else test,
        )
        WorkspaceSettings.objects.update_or_create(
            project=project,
            defaults={"split_train": shares["train"], "split_val": shares["val"], "split_test": shares["test"]},
        )
    with transaction.atomic():
        assigned, groups = _assign_unassigned(project, None, seed, actor)
    return _summary(project, assigned, groups)


@transaction.atomic
def assign_missing_splits(*, project: Project, item_ids: Iterable[int], actor: Any | None = None) -> int:
    """The import's call: splits for these newly gold-labelled items, grouped and stratified as a batch."""
    assigned, _ = _assign_unassigned(project, list(item_ids), 0, actor)
    return assigned


def _assign_unassigned(project: Project, item_ids: list[int] | None, seed: int, actor: Any | None) -> tuple[int, int]:
    rows = Item.objects.filter(project=project, gold__isnull=False, split="").order_by("id")
    if item_ids is not None:
        rows = rows.filter(pk__in=item_ids)
    pending = [
        (item_id, group_key or near_duplicate_group(normalized), label)
        for item_id, group_key, normalized, label in rows.values_list(
            "id", "group_key", "normalized_text", "gold__label_key"
        )
    ]
    if not pending:
        return 0, 0
    placed = _placed_groups(project, {key for _, key, _ in pending})
    assignment: dict[int, tuple[str, str]] = {}
    fresh: list[tuple[int, str, str]] = []
    for item_id, key, label in pending:
        if key in placed:
            assignment[item_id] = (placed[key], "near_duplicate")
        else:
            fresh.append((item_id, key, label))
    groups = _groups(fresh)
    filled = _filled_per_label(project.pk, sorted({label for label, _ in groups}))
    for item_id, split in _assign_groups(groups, split_targets(project), filled, seed).items():
        assignment[item_id] = (split, "stratified")
    _store(project, assignment, {item_id: key for item_id, key, _ in pending}, actor)
    return len(assignment), len(groups)


def _store(project: Project, assignment: dict[int, tuple[str, str]], keys: dict[int, str], actor: Any) -> None:
    for split in SPLITS:
        ids = [item_id for item_id, (chosen, _) in assignment.items() if chosen == split]
        for start in range(0, len(ids), BATCH):
            Item.objects.filter(pk__in=ids[start : start + BATCH]).update(split=split)
    missing_keys = list(Item.objects.filter(pk__in=list(keys), group_key="").values_list("id", flat=True))
    for item_id in missing_keys:
        Item.objects.filter(pk=item_id).update(group_key=keys[item_id])
    actor_id = getattr(actor, "pk", None)
    record_events(
        ItemEvent(
            project=project,
            item_id=item_id,
            kind=ItemEvent.Kind.SPLIT_ASSIGNED,
            actor_id=actor_id,
            detail={"split": split, "by": why},
        )
        for item_id, (split, why) in sorted(assignment.items())
    )


def _placed_groups(project: Project, keys: set[str]) -> dict[str, str]:
    """group key → the split its members already have (the lowest item id decides if they differ)."""
    placed: dict[str, str] = {}
    key_list = sorted(keys)
    for start in range(0, len(key_list), BATCH):
        rows = (
            Item.objects.filter(project=project, group_key__in=key_list[start : start + BATCH])
            .exclude(split="")
            .order_by("-id")
            .values_list("group_key", "split")
        )
        placed.update(dict(rows))  # ordered by -id: the lowest id is written last and wins
    return placed


def _filled_per_label(project_id: int, labels: list[str]) -> dict[str, dict[str, int]]:
    """Gold items already placed in each split, per label."""
    filled = {label: dict.fromkeys(SPLITS, 0) for label in labels}
    rows = (
        GoldLabel.objects.filter(item__project_id=project_id, label_key__in=labels)
        .exclude(item__split="")
        .values_list("label_key", "item__split")
    )
    for label, split in rows:
        filled[label][split] += 1
    return filled


def _lock_group(project_id: int, group_key: str) -> None:
    """Two near-duplicates labelled at the same moment must not land on different sides (PostgreSQL; SQLite
    writers are serialised anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", [project_id, group_key])


def _normalised_targets(train: float, val: float, test: float) -> dict[str, float]:
    shares = {"train": train, "val": val, "test": test}
    if any(share < 0 for share in shares.values()) or shares["train"] <= 0:
        raise ServiceError(gettext("Split shares must be non-negative and train must be above zero."), details=shares)
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()}


def _groups(rows: list[tuple[int, str, str]]) -> list[tuple[str, list[int]]]:
    """(majority label, item ids) per near-duplicate group, in a stable order."""
    members: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for item_id, key, label in rows:
        members[key].append((item_id, label))
    groups = []
    for key in sorted(members):
        votes = Counter(label for _, label in members[key])
        majority = min(votes, key=lambda label: (-votes[label], label))
        groups.append((majority, [item_id for item_id, _ in members[key]]))
    return groups


def _furthest_below(targets: dict[str, float], filled: dict[str, int], adding: int) -> str:
    size = sum(filled.values()) + adding
    return max(SPLITS, key=lambda split: (targets[split] * size - filled[split], -SPLITS.index(split)))


def _assign_groups(
    groups: list[tuple[str, list[int]]],
    targets: dict[str, float],
    filled: dict[str, dict[str, int]],
    seed: int,
) -> dict[int, str]:
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
        counts = dict(filled[label])
        size = sum(counts.values()) + sum(len(ids) for ids in label_groups)
        for ids in label_groups:
            chosen = max(SPLITS, key=lambda split: (targets[split] * size - counts[split], -SPLITS.index(split)))
            counts[chosen] += len(ids)
            assignment.update(dict.fromkeys(ids, chosen))
    return assignment


def _summary(project: Project, assigned: int, groups: int) -> SplitResult:
    per_label: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    rows = GoldLabel.objects.filter(item__project=project).exclude(item__split="")
    for label, split in rows.values_list("label_key", "item__split"):
        per_label[label][split] += 1
    counts = Counter(Item.objects.filter(project=project).values_list("split", flat=True))
    counts_out = {split: counts.get(split, 0) for split in SPLITS}
    counts_out["unassigned"] = counts.get("", 0)
    return SplitResult(counts=counts_out, per_label=dict(per_label), groups=groups, assigned=assigned)
