"""Metric dicts (checked against hand counts) and the server-side plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modeling.engine.evaluation import plots
from modeling.engine.evaluation.calibration import ThresholdChoice
from modeling.engine.evaluation.metrics import (
    abstention_metrics,
    classification_report,
    evaluate_probabilities,
    risk_coverage,
)

torch.set_num_threads(1)

KEYS = ["支付", "物流", "其他"]
FALLBACK = 2
# Gold / top class / confidence of six texts; the threshold 0.6 abstains on texts 3 and 5.
GOLD = np.array([0, 0, 1, 1, 2, 2])
TOP = np.array([0, 1, 1, 0, 2, 0])
CONF = np.array([0.9, 0.7, 0.8, 0.5, 0.95, 0.55])


def probs_from(top: np.ndarray, conf: np.ndarray, n_classes: int = 3) -> np.ndarray:
    probs = np.tile(((1 - conf) / (n_classes - 1))[:, None], (1, n_classes))
    probs[np.arange(len(top)), top] = conf
    return probs


def test_classification_report_matches_hand_counts():
    report = classification_report(GOLD, TOP, KEYS)
    assert report["accuracy"] == pytest.approx(3 / 6)
    # 支付: P 1/3 R 1/2; 物流: P 1/2 R 1/2; 其他: P 1/1 R 1/2.
    assert report["per_class"]["支付"] == {"precision": 0.333333, "recall": 0.5, "f1": 0.4, "support": 2}
    assert report["per_class"]["物流"]["f1"] == 0.5
    assert report["per_class"]["其他"]["f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert report["macro_f1"] == pytest.approx((0.4 + 0.5 + 2 / 3) / 3, abs=1e-6)
    assert report["confusion"]["matrix"] == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]


def test_abstention_and_out_of_scope_metrics():
    probs = probs_from(TOP, CONF)
    result = abstention_metrics(probs, GOLD, ThresholdChoice("precision", 0.9, 0.6), FALLBACK)
    # Answered: texts 0,1,2,4 (3 right) -> coverage 4/6, selective accuracy 3/4.
    assert result["coverage"] == pytest.approx(4 / 6, abs=1e-6)
    assert result["selective_accuracy"] == 0.75
    # Final labels with abstention: [0, 1, 1, 2, 2, 2].
    assert result["in_scope_accuracy"] == pytest.approx(2 / 4)
    assert result["oos_recall"] == 1.0  # both gold 其他 texts end as 其他 (one predicted, one abstained)
    assert result["oos_precision"] == pytest.approx(2 / 3, abs=1e-6)  # text 3 (gold 物流) abstained
    assert result["accuracy_with_abstention"] == pytest.approx(4 / 6, abs=1e-6)


def test_risk_coverage_curve_is_sorted_by_confidence():
    curve = risk_coverage(probs_from(TOP, CONF), GOLD)["curve"]
    assert [p["coverage"] for p in curve] == sorted(p["coverage"] for p in curve)
    assert curve[0]["risk"] == 0.0  # the most confident text (0.95) is right
    assert curve[-1]["coverage"] == 1.0 and curve[-1]["risk"] == 0.5
    big = risk_coverage(probs_from(np.zeros(1000, int), np.linspace(0.4, 1, 1000)), np.zeros(1000, int))
    assert len(big["curve"]) <= 101 and big["aurc"] == 0.0


def test_full_metric_dict_is_json_serialisable():
    probs = probs_from(TOP, CONF)
    sharp = probs_from(TOP, np.full(6, 0.99))
    metrics = evaluate_probabilities(probs, GOLD, KEYS, FALLBACK, ThresholdChoice("precision", 0.9, 0.6), sharp)
    text = json.dumps(metrics, ensure_ascii=False)
    assert "ece_before" in text and "reliability_before" in text and "oos_recall" in text
    assert metrics["calibration"]["ece_before"] > metrics["calibration"]["ece"]
    with pytest.raises(ValueError, match="empty"):
        evaluate_probabilities(np.zeros((0, 3)), np.zeros(0, int), KEYS)


def test_plots_render_svg_with_label_names():
    probs = probs_from(TOP, CONF)
    metrics = evaluate_probabilities(
        probs, GOLD, KEYS, FALLBACK, ThresholdChoice("precision", 0.9, 0.6), probs_from(TOP, np.full(6, 0.99))
    )
    cal = metrics["calibration"]
    svg = plots.reliability_diagram(cal["reliability"], cal["reliability_before"])
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "ECE" in svg
    confusion = plots.confusion_matrix_plot(metrics["confusion"]["matrix"], metrics["confusion"]["labels"])
    assert "物流" in confusion  # text stays text in the SVG (svg.fonttype none), names included
    risk = plots.risk_coverage_plot(metrics["risk_coverage"], metrics["abstention"])
    assert "AURC" in risk
    png = plots.risk_coverage_plot(metrics["risk_coverage"], fmt="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="svg or png"):
        plots.risk_coverage_plot(metrics["risk_coverage"], fmt="gif")
