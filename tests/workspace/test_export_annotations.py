"""The export carries every annotator's label with its time, besides gold, and keeps its old fields first."""

from __future__ import annotations

import csv
import io
import json

from labeling.selectors.items import EXPORT_FIELDS, export_lines
from labeling.services.assignment import claim_next
from labeling.services.workspace import submit_annotation

ORIGINAL_FIELDS = ["id", "external_id", "text", "label", "method", "needs_recheck", "split", "source", "metadata"]


def label_all(project, annotator, label_key: str) -> None:
    while (assignment := claim_next(project, annotator)) is not None:
        submit_annotation(
            project=project, annotator=annotator, item_id=assignment.item_id, label_key=label_key, time_ms=900
        )


def test_export_lists_each_annotators_labels_with_timestamps(published, items, annotator, annotator2):
    published.overlap_k = 2
    published.save()
    label_all(published, annotator, "支付")
    label_all(published, annotator2, "物流")

    rows = [json.loads(line) for line in export_lines(published, "jsonl")]
    assert len(rows) == len(items)
    first = rows[0]
    assert list(first)[: len(ORIGINAL_FIELDS)] == ORIGINAL_FIELDS
    assert [(a["annotator"], a["label"]) for a in first["annotations"]] == [
        ("annotator", "支付"),
        ("annotator2", "物流"),
    ]
    assert all(a["created_at"].startswith("20") and a["taxonomy_version"] == 1 for a in first["annotations"])
    assert first["label"] is None  # the two disagree: no gold yet, the annotations are still exported

    text = "".join(export_lines(published, "csv")).lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == EXPORT_FIELDS and EXPORT_FIELDS[: len(ORIGINAL_FIELDS)] == ORIGINAL_FIELDS
    csv_first = next(reader)
    assert [a["label"] for a in json.loads(csv_first["annotations"])] == ["支付", "物流"]
