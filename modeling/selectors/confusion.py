"""Readable confusion at 30–120 classes, and two versions side by side, from the versions' stored metrics.

A 118-class matrix is 13,924 cells nobody can read: the page lists the largest confusions instead, and draws
the matrix only over the classes those confusions involve, ordered so that classes confused with each other
sit next to each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

from modeling.models import ModelVersion

FULL_MATRIX_MAX_CLASSES = 30
TOP_CONFUSIONS = 20
HEAT_LEVELS = 5
SUMMARY_METRICS = ("accuracy", "macro_f1")
METRIC_LABELS = {
    "accuracy": _("Accuracy"),
    "macro_f1": _("Macro-F1"),
    "ece": _("ECE after"),
    "coverage": _("coverage"),
    "aurc": _("Risk–coverage AURC"),
}


@dataclass(frozen=True)
class Confusion:
    gold: str
    predicted: str
    count: int
    rate: float  # share of the gold class's items predicted as `predicted`


@dataclass(frozen=True)
class MatrixCell:
    gold: str
    predicted: str
    count: int
    heat: int  # 0..HEAT_LEVELS of the row-normalised value, for the cell's shade
    diagonal: bool


@dataclass(frozen=True)
class ConfusionView:
    labels: list[str]  # the classes the matrix shows, in order
    rows: list[tuple[str, list[MatrixCell]]]
    top: list[Confusion]
    limited: bool  # True when only the classes involved in the top confusions are shown
    n_classes: int


def eval_split(metrics: dict[str, Any]) -> str:
    """The split a version's page reports: test when it was measured, else validation."""
    return "test" if metrics.get("test") else "val"


def top_confusions(confusion: dict[str, Any], *, limit: int = TOP_CONFUSIONS) -> list[Confusion]:
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    found = []
    for i, row in enumerate(matrix):
        support = sum(row)
        for j, count in enumerate(row):
            if i != j and count:
                found.append(Confusion(labels[i], labels[j], int(count), count / support if support else 0.0))
    found.sort(key=lambda c: (-c.count, -c.rate, c.gold, c.predicted))
    return found[:limit]


def _involved(top: list[Confusion]) -> list[str]:
    """Classes of the top confusions, each placed next to the class it is most confused with (greedy chain)."""
    order: list[str] = []
    for confusion in top:
        for label in (confusion.gold, confusion.predicted):
            if label not in order:
                order.append(label)
        if len(order) >= FULL_MATRIX_MAX_CLASSES:
            break
    return order[:FULL_MATRIX_MAX_CLASSES]


def confusion_view(confusion: dict[str, Any]) -> ConfusionView | None:
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    if not labels or not matrix:
        return None
    top = top_confusions(confusion)
    limited = len(labels) > FULL_MATRIX_MAX_CLASSES
    shown = _involved(top) if limited else list(labels)
    index = {label: i for i, label in enumerate(labels)}
    rows = []
    for gold in shown:
        row = matrix[index[gold]]
        support = sum(row) or 1
        cells = [
            MatrixCell(
                gold,
                predicted,
                int(row[index[predicted]]),
                round(HEAT_LEVELS * row[index[predicted]] / support),
                gold == predicted,
            )
            for predicted in shown
        ]
        rows.append((gold, cells))
    return ConfusionView(shown, rows, top, limited, len(labels))


# --- two versions side by side --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    name: str
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def label(self) -> str:
        return str(METRIC_LABELS.get(self.name, self.name))


@dataclass(frozen=True)
class ClassDelta:
    label: str
    f1: Delta
    precision: Delta
    recall: Delta
    support_a: int | None
    support_b: int | None


@dataclass(frozen=True)
class ConfusionChange:
    gold: str
    predicted: str
    count_a: int
    count_b: int
    rate_a: float
    rate_b: float

    @property
    def change(self) -> float:
        return self.rate_b - self.rate_a


@dataclass(frozen=True)
class VersionComparison:
    a: ModelVersion
    b: ModelVersion
    split: str
    same_items: bool  # both measured on the same validation set (same sha256)
    metrics: list[Delta]
    per_class: list[ClassDelta]
    confusions: list[ConfusionChange]


def _split_metrics(version: ModelVersion, split: str) -> dict[str, Any]:
    return (version.metrics or {}).get(split) or {}


def _nested(metrics: dict[str, Any], group: str, name: str) -> float | None:
    return (metrics.get(group) or {}).get(name)


def _summary(ma: dict[str, Any], mb: dict[str, Any]) -> list[Delta]:
    deltas = [Delta(name, ma.get(name), mb.get(name)) for name in SUMMARY_METRICS]
    for group, name in (("calibration", "ece"), ("abstention", "coverage"), ("risk_coverage", "aurc")):
        deltas.append(Delta(name, _nested(ma, group, name), _nested(mb, group, name)))
    return deltas


def _per_class(ma: dict[str, Any], mb: dict[str, Any]) -> list[ClassDelta]:
    pa, pb = ma.get("per_class") or {}, mb.get("per_class") or {}
    out = []
    for label in sorted(set(pa) | set(pb)):
        ra, rb = pa.get(label) or {}, pb.get(label) or {}
        out.append(
            ClassDelta(
                label,
                Delta("f1", ra.get("f1"), rb.get("f1")),
                Delta("precision", ra.get("precision"), rb.get("precision")),
                Delta("recall", ra.get("recall"), rb.get("recall")),
                ra.get("support"),
                rb.get("support"),
            )
        )
    out.sort(key=lambda row: (row.f1.change is None, -abs(row.f1.change or 0.0), row.label))
    return out


def _rates(confusion: dict[str, Any]) -> dict[tuple[str, str], tuple[int, float]]:
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    out = {}
    for i, row in enumerate(matrix):
        support = sum(row)
        for j, count in enumerate(row):
            if i != j and count:
                out[(labels[i], labels[j])] = (int(count), count / support if support else 0.0)
    return out


def _changed_confusions(ma: dict[str, Any], mb: dict[str, Any], limit: int) -> list[ConfusionChange]:
    ra, rb = _rates(ma.get("confusion") or {}), _rates(mb.get("confusion") or {})
    changes = []
    for pair in set(ra) | set(rb):
        count_a, rate_a = ra.get(pair, (0, 0.0))
        count_b, rate_b = rb.get(pair, (0, 0.0))
        if count_a != count_b:
            changes.append(ConfusionChange(pair[0], pair[1], count_a, count_b, rate_a, rate_b))
    changes.sort(key=lambda c: (-abs(c.change), c.gold, c.predicted))
    return changes[:limit]


def compare_versions(a: ModelVersion, b: ModelVersion, *, limit: int = 30) -> VersionComparison:
    """b against a, on the split both were measured on (test when both have it, else validation)."""
    split = "test" if (a.metrics or {}).get("test") and (b.metrics or {}).get("test") else "val"
    ma, mb = _split_metrics(a, split), _split_metrics(b, split)
    sha_a = ((a.metrics or {}).get("val_set") or {}).get("sha256")
    sha_b = ((b.metrics or {}).get("val_set") or {}).get("sha256")
    return VersionComparison(
        a=a,
        b=b,
        split=split,
        same_items=bool(sha_a) and sha_a == sha_b,
        metrics=_summary(ma, mb),
        per_class=_per_class(ma, mb),
        confusions=_changed_confusions(ma, mb, limit),
    )
