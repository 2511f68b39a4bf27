"""Drift measures of the engine on feature vectors and label lists with known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.engine.evaluation.drift import (
    domain_auc,
    exceedance_tail,
    feature_drift,
    label_drift,
    novelty_drift,
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


def clusters(n: int, centres: np.ndarray, seed: int, spread: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return centres[rng.integers(len(centres), size=n)] + spread * rng.normal(size=(n, centres.shape[1]))


CENTRES = np.random.default_rng(42).normal(size=(9, 32))  # the last one never appears in the reference


def test_novelty_share_alerts_when_a_third_of_the_window_comes_from_a_new_cluster():
    reference = clusters(500, CENTRES[:8], seed=1)
    mixed = np.vstack([clusters(325, CENTRES[:8], seed=2), clusters(175, CENTRES[8:], seed=3)])
    same = clusters(500, CENTRES[:8], seed=4)

    drifted, clean = novelty_drift(reference, mixed), novelty_drift(reference, same)

    assert drifted.alert and drifted.share > drifted.threshold > drifted.expected_share
    assert drifted.p_value < 1e-6
    assert not clean.alert and abs(clean.share - clean.expected_share) < 0.06


def test_novelty_false_alerts_stay_near_alpha_on_same_distribution_windows():
    alerts = sum(
        novelty_drift(clusters(300, CENTRES[:8], seed=s), clusters(200, CENTRES[:8], seed=1000 + s), seed=s).alert
        for s in range(200)
    )
    assert alerts <= 6  # alpha 1 %: 2 expected in 200, 6 has a probability under 2 % by chance


def test_exceedance_law_is_a_distribution_with_the_exchangeable_mean():
    tail = exceedance_tail(n_window=40, n_calibration=30, rank=6)
    point = tail - np.r_[tail[1:], 0.0]
    assert tail[0] == pytest.approx(1.0) and (point >= -1e-12).all()
    assert float(np.arange(41) @ point) == pytest.approx(40 * 6 / 31)


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


def through(confusion: np.ndarray, true: np.ndarray, keys: list[str], rng: np.random.Generator) -> list[str]:
    rows = confusion / confusion.sum(axis=1, keepdims=True)
    return [keys[rng.choice(len(keys), p=rows[t])] for t in true]


def test_label_drift_does_not_take_the_models_own_errors_for_drift():
    keys, shares = ["a", "b", "c"], [0.5, 0.3, 0.2]
    confusion = np.array([[70, 30, 0], [5, 95, 0], [0, 0, 100]])  # 30 % of "a" is answered "b"
    alerts_with, alerts_without = 0, 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        reference = list(rng.choice(keys, size=600, p=shares))
        predicted = through(confusion, rng.choice(3, size=1000, p=shares), keys, rng)
        alerts_with += label_drift(predicted, reference, confusion=(keys, confusion.tolist()), seed=seed).alert
        alerts_without += label_drift(predicted, reference, seed=seed).alert
    assert alerts_with == 0 and alerts_without == 10


def test_label_null_counts_the_reference_as_a_sample():
    rng = np.random.default_rng(0)
    keys, shares = ["a", "b", "c", "d"], [0.4, 0.3, 0.2, 0.1]
    alerts = 0
    for seed in range(20):
        reference = list(rng.choice(keys, size=80, p=shares))  # a small training set: its shares are noisy
        window = list(rng.choice(keys, size=500, p=shares))
        alerts += label_drift(window, reference, seed=seed).alert
    assert alerts <= 1


def test_label_drift_through_the_confusion_still_sees_a_new_mix():
    keys = ["a", "b", "c"]
    confusion = np.array([[90, 10, 0], [5, 95, 0], [0, 5, 95]])
    rng = np.random.default_rng(3)
    reference = list(rng.choice(keys, size=600, p=[0.5, 0.3, 0.2]))
    moved = through(confusion, rng.choice(3, size=300, p=[0.1, 0.2, 0.7]), keys, rng)
    result = label_drift(moved, reference, confusion=(keys, confusion.tolist()))
    assert result.alert and result.confusion and result.expected_shares["b"] > result.reference_shares["b"]


def test_reliability_bins_from_production_answers():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1, 1, 1, 0])
    bins = reliability_from_confidence(confidence, correct)
    filled = [b for b in bins["bins"] if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(2, 0.5), (2, 1.0)]
    assert bins["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
