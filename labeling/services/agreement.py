"""Inter-annotator agreement: Cohen's kappa per annotator pair (sklearn), Fleiss' kappa (statsmodels) and
Krippendorff's alpha (nominal, missing data allowed), overall and per label one-vs-rest, per taxonomy version.
Stored as `AgreementReport` rows; labels below the owner's threshold are flagged with their disagreements."""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import krippendorff
import numpy as np
from django.db import transaction
from django.utils.translation import gettext
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from labeling.models import (
    AgreementReport,
    Annotation,
    GoldLabel,
    Item,
    Label,
    Project,
    ReviewTask,
    TaxonomyVersion,
)
from labeling.services.gold import plurality_suggestion
from labeling.services.review import create_review_task
from labeling.services.taxonomy import add_edge_case
from sceneclf_site.api_errors import NotFoundError

# One unit of the reliability data: the labels its annotators gave, keyed by annotator name.
Unit = dict[str, str]


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def cohen(a: list[Any], b: list[Any]) -> float | None:
    if len(a) < 2:
        return None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # a constant pair divides by zero: reported as "undefined" (None)
        return _finite(cohen_kappa_score(a, b))


def fleiss(units: list[list[Any]]) -> tuple[float | None, int]:
    """Fleiss' kappa needs the same number of ratings per unit: use the units with the most common count."""
    if not units:
        return None, 0
    common = Counter(len(unit) for unit in units).most_common(1)[0][0]
    rows = [unit for unit in units if len(unit) == common]
    codes = {value: code for code, value in enumerate(sorted({v for unit in rows for v in unit}, key=str))}
    if len(rows) < 2 or len(codes) < 2:
        return None, len(rows)
    counts, _ = aggregate_raters(np.array([[codes[v] for v in unit] for unit in rows]))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return _finite(fleiss_kappa(counts, method="fleiss")), len(rows)


def _reliability_data(units: list[Unit], raters: list[str], encode: dict[str, float]) -> np.ndarray:
    return np.array([[encode.get(unit.get(rater), np.nan) for unit in units] for rater in raters], dtype=float)


def _alpha_of(data: np.ndarray, domain: list[float]) -> float | None:
    if data.size == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # no variation at all: alpha is undefined
    return _finite(krippendorff.alpha(reliability_data=data, value_domain=domain, level_of_measurement="nominal"))


def kripp_alpha(units: list[Unit], raters: list[str], encode: dict[str, float]) -> float | None:
    return _alpha_of(_reliability_data(units, raters, encode), sorted(set(encode.values())))


BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


def bootstrap_alpha_ci(
    units: list[Unit],
    raters: list[str],
    encode: dict[str, float],
    *,
    n_boot: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Percentile interval of Krippendorff's alpha over items resampled with replacement (seeded, so a report
    is reproducible). Resamples without any variation have no alpha and are left out; `n_valid` counts the rest."""
    if len(units) < 2:
        return {}
    data = _reliability_data(units, raters, encode)
    domain = sorted(set(encode.values()))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        value = _alpha_of(data[:, rng.integers(0, len(units), len(units))], domain)
        if value is not None:
            values.append(value)
    if not values:
        return {}
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {
        "low": float(low),
        "high": float(high),
        "level": CI_LEVEL,
        "n_boot": n_boot,
        "n_valid": len(values),
        "seed": seed,
    }


def pair_agreement(unit: Unit) -> float:
    """Share of the item's annotator pairs that gave the same label."""
    pairs = list(itertools.combinations(unit.values(), 2))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0


@dataclass
class AgreementStats:
    n_items: int
    n_annotators: int
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    alpha_ci: dict[str, Any] = field(default_factory=dict)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    per_label: list[dict[str, Any]] = field(default_factory=list)
    confusion: dict[str, Any] = field(default_factory=dict)
    disagreements: dict[str, list[int]] = field(default_factory=dict)


def _pair_kappas(units: list[Unit], raters: list[str], transform: Any = None) -> list[dict[str, Any]]:
    pairs = []
    for a, b in itertools.combinations(raters, 2):
        shared = [unit for unit in units if a in unit and b in unit]
        ya = [transform(unit[a]) if transform else unit[a] for unit in shared]
        yb = [transform(unit[b]) if transform else unit[b] for unit in shared]
        pairs.append({"a": a, "b": b, "n": len(shared), "kappa": cohen(ya, yb)})
    return pairs


def agreement_stats(units: list[Unit], label_keys: list[str], threshold: float, item_ids: list[int]) -> AgreementStats:
    """All figures for the units that carry at least two annotations. `item_ids[i]` names `units[i]`."""
    kept = [(item_id, unit) for item_id, unit in zip(item_ids, units, strict=True) if len(unit) >= 2]
    ids = [item_id for item_id, _ in kept]
    units = [unit for _, unit in kept]
    raters = sorted({rater for unit in units for rater in unit})
    seen = {label for unit in units for label in unit.values()}
    labels = list(label_keys) + sorted(seen - set(label_keys))
    encode = {label: float(code) for code, label in enumerate(labels)}
    overall_fleiss, _ = fleiss([list(unit.values()) for unit in units])
    stats = AgreementStats(
        n_items=len(units),
        n_annotators=len(raters),
        fleiss_kappa=overall_fleiss,
        krippendorff_alpha=kripp_alpha(units, raters, encode),
        alpha_ci=bootstrap_alpha_ci(units, raters, encode),
        pairs=_pair_kappas(units, raters),
    )
    for label in labels:
        stats.per_label.append(_label_row(units, raters, label, threshold))
    stats.confusion = _pair_confusion(units, labels)
    disagreements: dict[str, list[int]] = defaultdict(list)
    for item_id, unit in zip(ids, units, strict=True):
        given = set(unit.values())
        if len(given) > 1:
            for label in sorted(given):
                disagreements[label].append(item_id)
    stats.disagreements = dict(disagreements)
    return stats


def _label_row(units: list[Unit], raters: list[str], label: str, threshold: float) -> dict[str, Any]:
    binary = [{rater: str(int(value == label)) for rater, value in unit.items()} for unit in units]
    label_fleiss, _ = fleiss([list(unit.values()) for unit in binary])
    alpha = kripp_alpha(binary, raters, {"0": 0.0, "1": 1.0})
    kappas = [pair["kappa"] for pair in _pair_kappas(binary, raters) if pair["kappa"] is not None]
    n_items = sum(1 for unit in units if label in unit.values())
    deciding = alpha if alpha is not None else label_fleiss
    return {
        "label": label,
        "fleiss_kappa": label_fleiss,
        "krippendorff_alpha": alpha,
        "mean_cohen_kappa": float(np.mean(kappas)) if kappas else None,
        "n_items": n_items,
        "flagged": deciding is not None and deciding < threshold,
    }


def _pair_confusion(units: list[Unit], labels: list[str]) -> dict[str, Any]:
    """Every ordered pair of two annotators' labels on one item (so the matrix is symmetric)."""
    first, second = [], []
    for unit in units:
        for a, b in itertools.permutations(unit.values(), 2):
            first.append(a)
            second.append(b)
    matrix = confusion_matrix(first, second, labels=labels).tolist() if first else []
    return {"labels": labels, "matrix": matrix}


def units_for(taxonomy: TaxonomyVersion) -> tuple[list[int], list[Unit]]:
    rows = Annotation.objects.filter(taxonomy=taxonomy).values_list("item_id", "annotator__username", "label_key")
    by_item: dict[int, Unit] = defaultdict(dict)
    for item_id, username, label_key in rows:
        by_item[item_id][username] = label_key
    item_ids = sorted(by_item)
    return item_ids, [by_item[item_id] for item_id in item_ids]


@transaction.atomic
def compute_agreement(project: Project) -> list[AgreementReport]:
    """One report per taxonomy version that has annotations; always records the project-wide annotation
    count so the next batch is counted from now."""
    total = Annotation.objects.filter(item__project=project).count()
    versions = TaxonomyVersion.objects.filter(project=project, annotations__isnull=False).distinct().order_by("number")
    reports = []
    for taxonomy in versions:
        item_ids, units = units_for(taxonomy)
        label_keys = list(
            Label.objects.filter(taxonomy=taxonomy).order_by("order", "key").values_list("key", flat=True)
        )
        stats = agreement_stats(units, label_keys, project.agreement_threshold, item_ids)
        reports.append(
            AgreementReport.objects.create(
                project=project,
                taxonomy=taxonomy,
                annotation_count=total,
                n_items=stats.n_items,
                n_annotators=stats.n_annotators,
                fleiss_kappa=stats.fleiss_kappa,
                krippendorff_alpha=stats.krippendorff_alpha,
                alpha_ci=stats.alpha_ci,
                pairs=stats.pairs,
                per_label=stats.per_label,
                confusion=stats.confusion,
                disagreements=stats.disagreements,
                threshold=project.agreement_threshold,
            )
        )
    return reports


MAX_QUEUED = 200


@transaction.atomic
def queue_low_agreement(*, project: Project, report_id: int, limit: int = 50) -> list[ReviewTask]:
    """The report's items with the lowest agreement (lowest first) go to the review queue, each with its
    plurality label as the suggestion and its pair agreement as the confidence. Items already waiting there
    keep their task."""
    from labeling.selectors.agreement import items_by_agreement  # the selector reads this module's helpers

    report = AgreementReport.objects.filter(project=project, pk=report_id).select_related("taxonomy").first()
    if report is None:
        raise NotFoundError(gettext("No agreement report %(report_id)s in this project.") % {"report_id": report_id})
    waiting = set(
        ReviewTask.objects.filter(project=project, status=ReviewTask.Status.OPEN).values_list("item_id", flat=True)
    )
    entries = [entry for entry in items_by_agreement(report, limit=None) if entry.item.pk not in waiting]
    return [
        create_review_task(
            project=project,
            item=entry.item,
            kind=ReviewTask.Kind.LOW_AGREEMENT,
            suggested_label=plurality_suggestion([label for _, label in entry.labels]) or "",
            confidence=entry.agreement,
        )
        for entry in entries[: min(limit, MAX_QUEUED)]
    ]


def edge_case_text(item_text: str, resolution: str | None, given: list[str]) -> str:
    """How a disagreement reads on the label's edge-case list: the text, then what it was resolved to."""
    if resolution:
        return f"{item_text} → {resolution}"
    return f"{item_text} → ? ({' / '.join(sorted(set(given)))})"


def add_disagreement_as_edge_case(*, project: Project, item_id: int, label_key: str) -> Label:
    """One click on the agreement page: the disagreeing item's text, with its resolution (the gold label if
    decided, else the unique plurality), joins the label's edge cases on the taxonomy draft."""
    item = Item.objects.filter(project=project, pk=item_id).first()
    if item is None:
        raise NotFoundError(gettext("No item %(item_id)s in this project.") % {"item_id": item_id})
    given = list(Annotation.objects.filter(item=item).values_list("label_key", flat=True))
    gold = GoldLabel.objects.filter(item=item).first()
    resolution = gold.label_key if gold is not None else plurality_suggestion(given)
    return add_edge_case(project=project, label_key=label_key, text=edge_case_text(item.text, resolution, given))
