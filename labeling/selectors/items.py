"""Reads for items, import jobs and exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext

from labeling.models import Annotation, ImportJob, Item, Project, TaxonomyVersion
from sceneclf_site.api_errors import NotFoundError, ServiceError


def latest_published_taxonomy(project: Project) -> TaxonomyVersion | None:
    return (
        TaxonomyVersion.objects.filter(project=project, status=TaxonomyVersion.Status.PUBLISHED)
        .order_by("-number")
        .first()
    )


def published_label_keys(taxonomy: TaxonomyVersion | None) -> set[str]:
    return set(taxonomy.labels.values_list("key", flat=True)) if taxonomy else set()


def item_list(
    project: Project,
    *,
    query: str = "",
    split: str | None = None,
    label: str = "",
    has_gold: bool | None = None,
) -> QuerySet[Item]:
    """Items filtered for the items page and API. `split=""` means unassigned; `None` means any."""
    items = Item.objects.filter(project=project).select_related("gold")
    if query:
        items = items.filter(text__icontains=query.strip())
    if split is not None:
        items = items.filter(split=split)
    if label:
        items = items.filter(gold__label_key=label)
    if has_gold is True:
        items = items.filter(gold__isnull=False)
    elif has_gold is False:
        items = items.filter(gold__isnull=True)
    return items.order_by("id")


def item_counts(project: Project) -> dict[str, int]:
    items = Item.objects.filter(project=project)
    counts = {"total": items.count(), "gold": items.filter(gold__isnull=False).count()}
    for split in (Item.Split.TRAIN, Item.Split.VAL, Item.Split.TEST):
        counts[split.value] = items.filter(split=split).count()
    counts["unassigned"] = items.filter(split="").count()
    return counts


def gold_label_keys_in_use(project: Project) -> list[str]:
    return sorted(
        set(Item.objects.filter(project=project, gold__isnull=False).values_list("gold__label_key", flat=True))
    )


EXPORT_FORMATS = ("jsonl", "csv")
# The first nine fields are the original export's; later ones are only ever appended.
EXPORT_FIELDS = [
    "id", "external_id", "text", "label", "method", "needs_recheck", "split", "source", "metadata",
    "gold_decided_by", "gold_updated_at", "annotations",
]  # fmt: skip


def _annotation_rows(item: Item) -> list[dict[str, Any]]:
    return [
        {
            "annotator": annotation.annotator.username,
            "label": annotation.label_key,
            "taxonomy_version": annotation.taxonomy.number,
            "created_at": annotation.created_at.isoformat(),
            "time_ms": annotation.time_ms,
        }
        for annotation in item.annotations.all()
    ]


def export_rows(project: Project, *, only_gold: bool = False) -> Iterator[dict[str, Any]]:
    """One dict per item, in id order, streamed from the database in chunks, with every annotator's label and
    its time besides the gold label."""
    annotations = Annotation.objects.select_related("annotator", "taxonomy").order_by("created_at", "id")
    items = (
        Item.objects.filter(project=project)
        .select_related("gold", "gold__decided_by")
        .prefetch_related(Prefetch("annotations", queryset=annotations))
        .order_by("id")
    )
    if only_gold:
        items = items.filter(gold__isnull=False)
    for item in items.iterator(chunk_size=2000):
        gold = getattr(item, "gold", None)
        yield {
            "id": item.id,
            "external_id": item.external_id,
            "text": item.text,
            "label": gold.label_key if gold else None,
            "method": gold.method if gold else None,
            "needs_recheck": gold.needs_recheck if gold else False,
            "split": item.split,
            "source": item.source,
            "metadata": item.metadata,
            "gold_decided_by": gold.decided_by.username if gold and gold.decided_by else None,
            "gold_updated_at": gold.updated_at.isoformat() if gold else None,
            "annotations": _annotation_rows(item),
        }


def export_lines(project: Project, fmt: str, *, only_gold: bool = False) -> Iterator[str]:
    """The export as text chunks (JSONL: one object a line; CSV: header, then one row per item)."""
    if fmt not in EXPORT_FORMATS:
        raise ServiceError(
            gettext("Unknown export format '%(fmt)s'. Use one of: %(value)s.")
            % {"fmt": fmt, "value": ", ".join(EXPORT_FORMATS)}
        )
    rows = export_rows(project, only_gold=only_gold)
    return _jsonl_lines(rows) if fmt == "jsonl" else _csv_lines(rows)


def _jsonl_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def _csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    # The BOM lets spreadsheet programs read the Chinese text as UTF-8; the importer skips it.
    yield "\ufeff" + buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow({**row, "metadata": _json_cell(row["metadata"]), "annotations": _json_cell(row["annotations"])})
        yield buffer.getvalue()


def _json_cell(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if value else ""


def import_job_list(project: Project) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(project=project).order_by("-created_at", "-id")


def import_job_get(project: Project, job_id: int) -> ImportJob:
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise NotFoundError(gettext("No such import job in this project."))
    return job
