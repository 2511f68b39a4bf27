"""Reads of stored agreement reports."""

from __future__ import annotations

from dataclasses import dataclass

from labeling.models import AgreementReport, Annotation, GoldLabel, Item, Project
from labeling.services.agreement import pair_agreement, units_for


def latest_reports(project: Project) -> list[AgreementReport]:
    """The newest report of each taxonomy version, newest version first."""
    latest: dict[int, AgreementReport] = {}
    for report in AgreementReport.objects.filter(project=project).select_related("taxonomy"):
        latest.setdefault(report.taxonomy_id, report)
    return sorted(latest.values(), key=lambda report: -report.taxonomy.number)


def report_get(project: Project, report_id: int) -> AgreementReport | None:
    return AgreementReport.objects.filter(project=project, pk=report_id).select_related("taxonomy").first()


@dataclass(frozen=True)
class Disagreement:
    item: Item
    labels: list[tuple[str, str]]  # (annotator, label)
    gold: str | None


def disagreements_for(report: AgreementReport, label_key: str, limit: int = 20) -> list[Disagreement]:
    """The disagreeing items of a flagged label: candidate edge cases for the taxonomy draft."""
    ids = report.disagreements.get(label_key, [])[:limit]
    items = Item.objects.in_bulk(ids)
    gold = dict(GoldLabel.objects.filter(item_id__in=ids).values_list("item_id", "label_key"))
    labels: dict[int, list[tuple[str, str]]] = {item_id: [] for item_id in ids}
    for item_id, username, key in (
        Annotation.objects.filter(item_id__in=ids, taxonomy=report.taxonomy)
        .order_by("id")
        .values_list("item_id", "annotator__username", "label_key")
    ):
        labels[item_id].append((username, key))
    return [
        Disagreement(item=items[item_id], labels=labels[item_id], gold=gold.get(item_id))
        for item_id in ids
        if item_id in items
    ]


@dataclass(frozen=True)
class ItemAgreement:
    item: Item
    agreement: float  # share of annotator pairs that agree
    labels: list[tuple[str, str]]  # (annotator, label)
    gold: str | None


def items_by_agreement(report: AgreementReport, limit: int | None = 50) -> list[ItemAgreement]:
    """Items of the report's taxonomy version whose annotators did not all agree, lowest agreement first
    (more annotators first on a tie): the order a reviewer should take them in."""
    item_ids, units = units_for(report.taxonomy)
    scored = sorted(
        (pair_agreement(unit), -len(unit), item_id, unit)
        for item_id, unit in zip(item_ids, units, strict=True)
        if len(unit) >= 2 and pair_agreement(unit) < 1.0
    )
    if limit is not None:
        scored = scored[:limit]
    ids = [item_id for _, _, item_id, _ in scored]
    items = Item.objects.in_bulk(ids)
    gold = dict(GoldLabel.objects.filter(item_id__in=ids).values_list("item_id", "label_key"))
    return [
        ItemAgreement(item=items[item_id], agreement=score, labels=sorted(unit.items()), gold=gold.get(item_id))
        for score, _, item_id, unit in scored
        if item_id in items
    ]
