"""Annotator statistics: pace, agreement with gold and with the other annotators, skips, and the score on
check items (gold items mixed into the queues)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from labeling.models import Annotation, CheckItem, GoldLabel, Item, Membership, Project, Role, Skip

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class Share:
    hits: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None


@dataclass(frozen=True)
class AnnotatorStats:
    username: str
    annotations: int
    skips: int
    labelling_ms: int  # display-to-submit time, summed
    with_gold: Share  # items whose gold was not their own single label, check items aside
    with_others: Share  # pairs with another annotator's label on the same item
    check_items: Share

    @property
    def items_per_hour(self) -> float | None:
        return self.annotations / (self.labelling_ms / MS_PER_HOUR) if self.labelling_ms else None


@dataclass
class _Tally:
    annotations: int = 0
    ms: int = 0
    gold_hits: int = 0
    gold_total: int = 0
    other_hits: int = 0
    other_total: int = 0
    check_hits: int = 0
    check_total: int = 0


def annotator_stats(project: Project) -> list[AnnotatorStats]:
    """One row per annotator with annotations or skips in the project, busiest first."""
    rows = list(
        Annotation.objects.filter(item__project=project).values_list(
            "annotator__username", "item_id", "label_key", "time_ms"
        )
    )
    gold = {
        item_id: (label, method)
        for item_id, label, method in GoldLabel.objects.filter(item__project=project).values_list(
            "item_id", "label_key", "method"
        )
    }
    checks = set(CheckItem.objects.filter(project=project).values_list("item_id", flat=True))
    by_item: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for username, item_id, label, _ in rows:
        by_item[item_id].append((username, label))
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for username, item_id, label, time_ms in rows:
        _count(tallies[username], username, label, time_ms, gold.get(item_id), item_id in checks, by_item[item_id])
    skips = dict(
        Skip.objects.filter(item__project=project)
        .values_list("annotator__username")
        .annotate(n=Count("id"))
        .values_list("annotator__username", "n")
    )
    names = set(tallies) | set(skips) | set(_annotator_names(project))
    stats = [_stats(name, tallies.get(name, _Tally()), skips.get(name, 0)) for name in names]
    return sorted(stats, key=lambda row: (-row.annotations, row.username))


def _count(
    tally: _Tally,
    username: str,
    label: str,
    time_ms: int,
    gold: tuple[str, str] | None,
    is_check: bool,
    on_item: list[tuple[str, str]],
) -> None:
    tally.annotations += 1
    tally.ms += time_ms
    if is_check and gold is not None:
        tally.check_total += 1
        tally.check_hits += label == gold[0]
    elif gold is not None and gold[1] != GoldLabel.Method.SINGLE:
        # A single-annotator gold is the annotator's own label: comparing with it says nothing.
        tally.gold_total += 1
        tally.gold_hits += label == gold[0]
    for other, other_label in on_item:
        if other != username:
            tally.other_total += 1
            tally.other_hits += label == other_label


def _stats(username: str, tally: _Tally, skips: int) -> AnnotatorStats:
    return AnnotatorStats(
        username=username,
        annotations=tally.annotations,
        skips=skips,
        labelling_ms=tally.ms,
        with_gold=Share(tally.gold_hits, tally.gold_total),
        with_others=Share(tally.other_hits, tally.other_total),
        check_items=Share(tally.check_hits, tally.check_total),
    )


def check_item_list(project: Project) -> QuerySet[CheckItem]:
    return (
        CheckItem.objects.filter(project=project)
        .select_related("item", "item__gold")
        .annotate(answers=Count("item__annotations"))
        .order_by("-created_at", "-id")
    )


def check_item_candidates(project: Project, label: str = "", limit: int = 50) -> list[Item]:
    """Gold items that could become check items: settled, not yet marked; decided by people first."""
    items = Item.objects.filter(project=project, gold__isnull=False, gold__needs_recheck=False, check_item__isnull=True)
    if label:
        items = items.filter(gold__label_key=label)
    trusted = [GoldLabel.Method.ADJUDICATED, GoldLabel.Method.REVIEW, GoldLabel.Method.UNANIMOUS]
    ordered = sorted(
        items.select_related("gold")[: limit * 4],
        key=lambda item: (item.gold.method not in trusted, item.pk),
    )
    return ordered[:limit]


def _annotator_names(project: Project) -> list[Any]:
    return list(
        Membership.objects.filter(project=project, role=Role.ANNOTATOR)
        .select_related("user")
        .values_list("user__username", flat=True)
    )
