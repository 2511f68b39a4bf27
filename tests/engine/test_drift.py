"""Drift measures of the engine on feature vectors and label lists with known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.engine.evaluation.drift import (
    domain_auc,
    feature_drift,
    label_drift,
    reliability_from_confidence,
)


def gaussian(n: int, shift: float = 0.0, seed: int = 0, dim: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) + shift * np.r_[np.ones(4), np.zeros(dim - 4)]


def test_domain_auc_is_high_on_shifted_and_near_half_on_same_distribution():
    reference = gaussian(400, seed=1)
    assert domain_auc(reference, gaussian(200, shift=1.0, seed=2)) > 0.85
    assert abs(domain_auc(reference, gaussian(200, seed=3)) - 0.5) < 0.08


def test_feature_drift_alerts_only_on_the_shift():
    reference = gaussian(400, seed=1)
    shifted = feature_drift(reference, gaussian(150, shift=0.8, seed=4))
    same = feature_drift(reference, gaussian(150, seed=5))
    assert shifted.alert and shifted.auc > shifted.threshold >= 0.65
    assert not same.alert
    assert 0.4 < same.null_mean < 0.6 and same.threshold >= 0.65


def test_domain_auc_refuses_too_few_rows():
    with pytest.raises(ValueError, match="at least"):
        domain_auc(gaussian(10), gaussian(10, seed=1))


def test_label_drift_sees_a_new_mix_of_labels():
    rng = np.random.default_rng(0)
    reference = list(rng.choice(["a", "b", "c"], size=600, p=[0.5, 0.3, 0.2]))
    same = label_drift(list(rng.choice(["a", "b", "c"], size=200, p=[0.5, 0.3, 0.2])), reference)
    moved = label_drift(list(rng.choice(["a", "b", "c"], size=200, p=[0.1, 0.2, 0.7])), reference)
    assert not same.alert and moved.alert
    assert moved.js_distance > 0.3 and moved.window_shares["c"] > 0.6


def test_reliability_bins_from_production_answers():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1, 1, 1, 0])
    bins = reliability_from_confidence(confidence, correct)
    filled = [b for b in bins["bins"] if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(2, 0.5), (2, 1.0)]
    assert bins["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
