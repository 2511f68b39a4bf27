"""Temperature scaling, ECE and the abstention threshold on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling.engine.evaluation.calibration import (
    ThresholdChoice,
    apply_abstention,
    choose_in_scope_accuracy_rule,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    nll,
    probabilities,
    reliability_bins,
)

torch.set_num_threads(1)


def calibrated_logits(n: int, n_classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution: labels are sampled from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, n_classes))
    probs = probabilities(logits)
    y = np.array([rng.choice(n_classes, p=p) for p in probs])
    return logits, y


def test_temperature_scaling_fixes_overconfident_logits():
    logits, y = calibrated_logits(3000)
    over = logits * 4.0  # the same ranking, far too sharp
    temperature = fit_temperature(over, y)
    assert 3.0 < temperature < 5.5
    assert nll(over, y, temperature) < nll(over, y) - 0.5
    ece_before = expected_calibration_error(probabilities(over), y)
    ece_after = expected_calibration_error(probabilities(over, temperature), y)
    assert ece_after < 0.04 < ece_before


def test_temperature_stays_near_one_for_calibrated_logits():
    logits, y = calibrated_logits(3000, seed=1)
    assert 0.85 < fit_temperature(logits, y) < 1.15


def test_reliability_bins_count_and_ece_by_hand():
    # Two texts in the 0.9 bin (one right), one in the 0.6 bin (right): ECE = 2/3*|0.5-0.9| + 1/3*|1-0.6|.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 1, 0])
    data = reliability_bins(probs, y)
    assert sum(b["count"] for b in data["bins"]) == 3 and data["n_bins"] == 15
    assert data["ece"] == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.4)
    filled = [b for b in data["bins"] if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(1, 1.0), (2, 0.5)]


def test_precision_target_is_met_with_maximal_coverage():
    logits, y = calibrated_logits(2000, seed=2)
    probs = probabilities(logits)
    # A low floor: this checks the target rule itself (the coverage floor has its own tests in test_ood.py).
    choice = choose_threshold(probs, y, "precision", 0.8, coverage_floor=0.05)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    answered = confidence >= choice.threshold
    assert choice.target_met
    assert correct[answered].mean() >= 0.8
    assert choice.val_coverage == pytest.approx(answered.mean())
    # Answering even one more text (the next lower confidence) would break the target... or no such cut exists
    # below tau that meets it: check every lower cut.
    for tau in np.unique(confidence[confidence < choice.threshold]):
        assert correct[confidence >= tau].mean() < 0.8


def test_coverage_target_answers_at_least_the_target_share():
    logits, y = calibrated_logits(1000, seed=3)
    probs = probabilities(logits)
    choice = choose_threshold(probs, y, "coverage", 0.7)
    coverage = (probs.max(axis=1) >= choice.threshold).mean()
    assert 0.7 <= coverage < 0.702


def test_unreachable_precision_is_reported_not_hidden():
    rng = np.random.default_rng(4)
    probs = probabilities(rng.normal(size=(300, 4)))
    y = rng.integers(0, 4, 300)  # labels unrelated to the probabilities
    choice = choose_threshold(probs, y, "precision", 0.999)
    assert not choice.target_met
    assert 0 < choice.val_coverage <= 1


def test_per_class_thresholds_follow_each_class():
    rng = np.random.default_rng(5)
    n = 600
    predicted = rng.integers(0, 2, n)
    confidence = rng.uniform(0.5, 1.0, n)
    probs = np.zeros((n, 2))
    probs[np.arange(n), predicted] = confidence
    probs[np.arange(n), 1 - predicted] = 1 - confidence
    # Class 0 predictions are right 95% of the time; class 1 predictions only when confidence > 0.8.
    right = np.where(predicted == 0, rng.uniform(size=n) < 0.95, confidence > 0.8)
    y = np.where(right, predicted, 1 - predicted)
    choice = choose_threshold(probs, y, "precision", 0.9, per_class=True, coverage_floor=0.05)
    assert choice.class_thresholds[0] < 0.6 < 0.7 < choice.class_thresholds[1] <= 0.81
    is_one = (predicted == 1) & (confidence >= choice.class_thresholds[1])
    assert right[is_one].mean() >= 0.9
    assert choice.val_coverage > (probs.max(axis=1) >= choice.threshold).mean()


def test_abstained_texts_get_the_fallback():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.8, 0.1]])
    choice = ThresholdChoice("precision", 0.9, threshold=0.5)
    final, abstained = apply_abstention(probs, choice, fallback_index=2)
    assert final.tolist() == [0, 2, 1] and abstained.tolist() == [False, True, False]
    restored = ThresholdChoice.from_dict(ThresholdChoice("coverage", 0.5, 0.3, {1: 0.7}).to_dict())
    assert restored.class_thresholds == {1: 0.7}


def test_bad_targets_are_rejected():
    probs, y = np.array([[0.6, 0.4]]), np.array([0])
    with pytest.raises(ValueError, match="target kind"):
        choose_threshold(probs, y, "recall", 0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        choose_threshold(probs, y, "precision", 1.5)
    with pytest.raises(ValueError, match="at least one"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_macro_f1_threshold_sends_unsure_texts_to_the_fallback_class():
    # Class 2 is the fallback (out of scope). Its texts get confident-looking but wrong in-scope predictions
    # with lower confidence than the real in-scope texts: the macro_f1 tau must abstain on them.
    rng = np.random.default_rng(0)
    n = 300
    y = np.r_[np.zeros(n, int), np.ones(n, int), np.full(n, 2)]
    probs = np.zeros((3 * n, 3))
    probs[:n, 0] = rng.uniform(0.8, 1.0, n)
    probs[n : 2 * n, 1] = rng.uniform(0.8, 1.0, n)
    probs[2 * n :, 0] = rng.uniform(0.4, 0.7, n)
    probs[:, 2] = 1 - probs.max(axis=1)
    choice = choose_threshold(probs, y, "macro_f1", 1.0, fallback_index=2)
    assert 0.65 <= choice.threshold <= 0.8 + 1e-9
    assert abs(choice.val_coverage - 2 / 3) < 0.01  # answers the in-scope texts, abstains on the rest
    precision_choice = choose_threshold(probs, y, "precision", 0.6)
    assert precision_choice.threshold < choice.threshold  # a loose precision target answers the OOS texts


def test_macro_f1_threshold_needs_the_fallback_index():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError, match="fallback"):
        choose_threshold(probs, np.array([0, 1]), "macro_f1", 1.0)


def test_balanced_threshold_weighs_out_of_scope_recall_like_in_scope_accuracy():
    # 50 in-scope classes, one fallback class: macro-F1 gives the fallback one vote in 51, balanced gives it half.
    rng = np.random.default_rng(1)
    n_classes, per_class, fallback = 51, 20, 50
    y = np.repeat(np.arange(n_classes), per_class)
    confidence = np.where(y == fallback, rng.uniform(0.3, 0.9, len(y)), rng.uniform(0.6, 1.0, len(y)))
    predicted = np.where(y == fallback, rng.integers(0, fallback, len(y)), y)
    probs = np.full((len(y), n_classes), 0.0)
    probs[np.arange(len(y)), predicted] = confidence
    probs[:, fallback] += 1 - confidence
    balanced = choose_threshold(probs, y, "balanced", 1.0, fallback_index=fallback)
    answered = balanced.answered(probs)
    in_scope_acc = np.mean(answered[y != fallback])
    oos_recall = np.mean(~answered[y == fallback])
    assert in_scope_acc + oos_recall > 1.2  # both sides are served
    assert oos_recall > 0.4


def out_of_scope_val(seed: int = 0, n: int = 400, n_oos: int = 60, n_classes: int = 4):
    """Val probabilities, labels (the last class is the fallback) and an out-of-scope score higher on average
    for the fallback's texts."""
    rng = np.random.default_rng(seed)
    fallback = n_classes - 1
    y = np.r_[rng.integers(0, fallback, n), np.full(n_oos, fallback)]
    logits = rng.normal(0, 1, (len(y), n_classes))
    logits[np.arange(n), y[:n]] += 2.5  # in-scope texts lean to their class
    scores = rng.normal(0, 1, len(y)) + 1.5 * (y == fallback)
    return probabilities(logits), y, fallback, scores


def _outcome(probs, y, fallback, rejected):
    final = np.where(rejected, fallback, probs.argmax(axis=1))
    in_scope = y != fallback
    return (final[in_scope] == y[in_scope]).mean(), (final[~in_scope] == fallback).mean()


def test_in_scope_accuracy_rule_catches_the_most_fallback_texts_the_target_allows():
    probs, y, fallback, scores = out_of_scope_val()
    target = 0.8
    choice = choose_in_scope_accuracy_rule(probs, y, fallback, target, scores)
    assert choice.target_kind == "in_scope_acc" and choice.target_met and choice.threshold == 0.0
    accuracy, recall = _outcome(probs, y, fallback, scores > choice.ood_threshold)
    assert accuracy >= target
    # No threshold on the score keeping the target catches more fallback texts (checked cut by cut).
    feasible = [_outcome(probs, y, fallback, scores > cut) for cut in np.unique(scores)]
    assert recall == max(r for a, r in feasible if a >= target)
    _, abstained = apply_abstention(probs, choice, fallback, scores)
    assert np.isclose(choice.val_coverage, 1 - abstained.mean())


def test_in_scope_accuracy_rule_without_a_score_thresholds_the_top_probability():
    probs, y, fallback, _ = out_of_scope_val(seed=1)
    choice = choose_threshold(probs, y, "in_scope_acc", 0.75, fallback_index=fallback)
    assert choice.ood_threshold is None and choice.threshold > 0.0
    accuracy, _ = _outcome(probs, y, fallback, probs.max(axis=1) < choice.threshold)
    assert accuracy >= 0.75
    with pytest.raises(ValueError, match="fallback class"):
        choose_threshold(probs, y, "in_scope_acc", 0.75)


def test_an_unreachable_in_scope_accuracy_answers_everything_and_says_so():
    probs, y, fallback, scores = out_of_scope_val(seed=2)
    argmax_accuracy, _ = _outcome(probs, y, fallback, np.zeros(len(y), dtype=bool))
    choice = choose_in_scope_accuracy_rule(probs, y, fallback, min(1.0, argmax_accuracy + 0.05), scores)
    assert not choice.target_met and "cannot be reached" in choice.warning
    in_scope = y != fallback
    assert choice.in_scope(scores, len(y))[in_scope].all()  # no in-scope text is turned away
