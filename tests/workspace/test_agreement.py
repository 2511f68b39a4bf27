"""Agreement figures equal what sklearn / statsmodels / krippendorff give on the raw matrix."""

from __future__ import annotations

import itertools

import krippendorff
import numpy as np
import pytest
from django.contrib.auth import get_user_model
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from labeling.models import AgreementReport, Annotation, Role
from labeling.services.agreement import add_disagreement_as_edge_case, agreement_stats, compute_agreement
from labeling.services.projects import add_member
from labeling.services.taxonomy import get_or_create_draft
from tests.workspace.factories import make_items

LABELS = ["旅行", "支付", "物流", "其他"]
RATERS = ["ann_a", "ann_b", "ann_c"]
# Items × raters; every item has three ratings (so Fleiss uses all of them).
MATRIX = [
    ["旅行", "旅行", "旅行"],
    ["支付", "支付", "物流"],
    ["物流", "物流", "物流"],
    ["支付", "支付", "支付"],
    ["其他", "旅行", "其他"],
    ["物流", "支付", "物流"],
    ["旅行", "旅行", "其他"],
    ["支付", "支付", "支付"],
]


def units() -> list[dict[str, str]]:
    return [dict(zip(RATERS, row, strict=True)) for row in MATRIX]


def expected_fleiss(matrix: list[list[str]]) -> float:
    codes = {label: i for i, label in enumerate(sorted({v for row in matrix for v in row}))}
    table, _ = aggregate_raters(np.array([[codes[v] for v in row] for row in matrix]))
    return fleiss_kappa(table, method="fleiss")


def expected_alpha(matrix: list[list[str]], labels: list[str]) -> float:
    data = np.array([[labels.index(row[r]) for row in matrix] for r in range(len(RATERS))], dtype=float)
    return krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")


def test_overall_figures_match_the_libraries():
    stats = agreement_stats(units(), LABELS, 0.8, list(range(len(MATRIX))))
    assert stats.n_items == 8 and stats.n_annotators == 3
    assert stats.fleiss_kappa == pytest.approx(expected_fleiss(MATRIX))
    assert stats.krippendorff_alpha == pytest.approx(expected_alpha(MATRIX, LABELS))
    for pair, (i, j) in zip(stats.pairs, itertools.combinations(range(3), 2), strict=True):
        expected = cohen_kappa_score([row[i] for row in MATRIX], [row[j] for row in MATRIX])
        assert (pair["a"], pair["b"], pair["n"]) == (RATERS[i], RATERS[j], 8)
        assert pair["kappa"] == pytest.approx(expected)


def test_per_label_one_vs_rest_and_flags():
    stats = agreement_stats(units(), LABELS, 0.8, list(range(len(MATRIX))))
    rows = {row["label"]: row for row in stats.per_label}
    for label in LABELS:
        binary = [["1" if v == label else "0" for v in row] for row in MATRIX]
        assert rows[label]["fleiss_kappa"] == pytest.approx(expected_fleiss(binary))
        assert rows[label]["krippendorff_alpha"] == pytest.approx(expected_alpha(binary, ["0", "1"]))
        assert rows[label]["flagged"] == (rows[label]["krippendorff_alpha"] < 0.8)
    assert rows["其他"]["flagged"] and rows["物流"]["flagged"]
    assert stats.disagreements["其他"] == [4, 6]


def test_missing_ratings_are_allowed():
    data = units()
    del data[0]["ann_c"]
    del data[3]["ann_a"]
    stats = agreement_stats(data, LABELS, 0.8, list(range(len(MATRIX))))
    reliability = np.array([[LABELS.index(u[r]) if r in u else np.nan for u in data] for r in RATERS], dtype=float)
    assert stats.krippendorff_alpha == pytest.approx(
        krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    )
    # Fleiss uses the six items with three ratings.
    assert stats.fleiss_kappa == pytest.approx(
        expected_fleiss([row for i, row in enumerate(MATRIX) if i not in (0, 3)])
    )
    ab = next(p for p in stats.pairs if (p["a"], p["b"]) == ("ann_a", "ann_b"))
    assert ab["n"] == 7


def test_confusion_matrix_is_symmetric_and_counts_pairs():
    stats = agreement_stats(units(), LABELS, 0.8, list(range(len(MATRIX))))
    matrix = np.array(stats.confusion["matrix"])
    assert (matrix == matrix.T).all()
    assert matrix.sum() == len(MATRIX) * 3 * 2  # ordered pairs of three raters per item


@pytest.mark.django_db
def test_compute_agreement_stores_a_report_and_adds_edge_case(published):
    users = []
    for name in RATERS:
        user = get_user_model().objects.create_user(name, password="x")
        add_member(project=published, user=user, role=Role.ANNOTATOR)
        users.append(user)
    items = make_items(published, [f"第{i}条一致性测试反馈" for i in range(len(MATRIX))])
    taxonomy = published.taxonomy_versions.get(status="published")
    for item, row in zip(items, MATRIX, strict=True):
        for user, label in zip(users, row, strict=True):
            Annotation.objects.create(item=item, annotator=user, label_key=label, taxonomy=taxonomy, time_ms=1)
    (report,) = compute_agreement(published)
    assert report.krippendorff_alpha == pytest.approx(
        expected_alpha(MATRIX, ["旅行", "支付", "物流", "售后", "账户", "其他"])
    )
    assert report.annotation_count == 24
    assert "其他" in report.flagged_labels
    assert AgreementReport.objects.filter(project=published).count() == 1
    label = add_disagreement_as_edge_case(project=published, item_id=items[4].pk, label_key="其他")
    draft = get_or_create_draft(project=published)
    assert label.taxonomy_id == draft.pk and not draft.is_published
    assert label.edge_cases[-1] == f"{items[4].text} → 其他"
