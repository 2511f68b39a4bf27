"""Evaluation metrics as plain JSON-serialisable dicts (scikit-learn does the counting)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from modeling.engine.evaluation.calibration import (
    ThresholdChoice,
    apply_abstention,
    log_loss_of,
    reliability_bins,
)

# The stored risk-coverage curve is thinned to about this many points (the full curve has one per text).
CURVE_POINTS = 101


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, label_keys: list[str]) -> dict:
    """Accuracy, macro-F1 (over the classes present in gold or predictions), per-class P/R/F1/support, confusion."""
    labels = np.arange(len(label_keys))
    present = np.union1d(np.unique(y_true), np.unique(y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": _r(accuracy_score(y_true, y_pred)),
        "macro_f1": _r(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": _r(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "per_class": {
            key: {"precision": _r(precision[i]), "recall": _r(recall[i]), "f1": _r(f1[i]), "support": int(support[i])}
            for i, key in enumerate(label_keys)
        },
        "confusion": {"labels": list(label_keys), "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    }


def risk_coverage(probs: np.ndarray, y_true: np.ndarray, points: int = CURVE_POINTS) -> dict:
    """Risk (error rate on answered texts) against coverage, answering the most confident texts first."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y_true
    order = np.argsort(-confidence, kind="stable")
    n = len(order)
    answered = np.arange(1, n + 1)
    risk = np.cumsum(~correct[order]) / answered
    keep = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))
    return {
        "aurc": _r(risk.mean()),  # area under the risk-coverage curve: lower is better
        "curve": [
            {"coverage": _r(answered[i] / n), "risk": _r(risk[i]), "threshold": _r(confidence[order][i])} for i in keep
        ],
    }


def oos_auroc(scores: np.ndarray, y_true: np.ndarray, fallback_index: int) -> float | None:
    """AUROC of a score (higher = more out of scope) separating gold-fallback texts from in-scope ones."""
    gold_oos = np.asarray(y_true) == fallback_index
    if gold_oos.all() or not gold_oos.any():
        return None
    return _r(roc_auc_score(gold_oos, scores))


def abstention_metrics(
    probs: np.ndarray,
    y_true: np.ndarray,
    choice: ThresholdChoice,
    fallback_index: int | None,
    ood_scores: np.ndarray | None = None,
) -> dict:
    """Coverage and selective accuracy at the threshold; in-scope accuracy and OOS recall/precision.

    Out of scope (OOS) = gold is the fallback class; a prediction counts as OOS when it is the fallback
    class or an abstention.
    """
    predicted = probs.argmax(axis=1)
    answered = choice.answered(probs, ood_scores)
    result = {
        "threshold": _r(choice.threshold),
        "ood_kind": choice.ood_kind,
        "ood_threshold": _r(choice.ood_threshold),
        "n_out_of_scope_score": int((~choice.in_scope(ood_scores, len(probs))).sum()),
        "class_thresholds": {str(k): _r(v) for k, v in choice.class_thresholds.items()},
        "coverage": _r(answered.mean()),
        "selective_accuracy": _r((predicted[answered] == y_true[answered]).mean()) if answered.any() else None,
        "n_abstained": int((~answered).sum()),
    }
    if fallback_index is None:
        return result
    final, _ = apply_abstention(probs, choice, fallback_index, ood_scores)
    gold_oos, pred_oos = y_true == fallback_index, final == fallback_index
    in_scope = ~gold_oos
    result.update(
        accuracy_with_abstention=_r((final == y_true).mean()),
        macro_f1_with_abstention=_r(f1_score(y_true, final, average="macro", zero_division=0)),
        in_scope_accuracy=_r((final[in_scope] == y_true[in_scope]).mean()) if in_scope.any() else None,
        oos_recall=_r(pred_oos[gold_oos].mean()) if gold_oos.any() else None,
        oos_precision=_r(gold_oos[pred_oos].mean()) if pred_oos.any() else None,
        n_oos=int(gold_oos.sum()),
        # AUROC in-scope vs out-of-scope: of the top probability (as 1 - p) and of the out-of-scope score.
        oos_auroc_msp=oos_auroc(1.0 - probs.max(axis=1), y_true, fallback_index),
        oos_auroc_score=None if ood_scores is None else oos_auroc(ood_scores, y_true, fallback_index),
    )
    return result


def evaluate_probabilities(
    probs: np.ndarray,
    y_true: np.ndarray,
    label_keys: list[str],
    fallback_index: int | None = None,
    choice: ThresholdChoice | None = None,
    probs_uncalibrated: np.ndarray | None = None,
    ood_scores: np.ndarray | None = None,
) -> dict:
    """The full metric dict for one split: classification, calibration (before/after), risk-coverage, abstention."""
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        raise ValueError("cannot evaluate on an empty split")
    result = classification_report(y_true, probs.argmax(axis=1), label_keys)
    after = reliability_bins(probs, y_true)
    result["calibration"] = {"ece": _r(after["ece"]), "nll": _r(log_loss_of(probs, y_true)), "reliability": after}
    if probs_uncalibrated is not None:
        before = reliability_bins(probs_uncalibrated, y_true)
        result["calibration"].update(
            ece_before=_r(before["ece"]),
            nll_before=_r(log_loss_of(np.asarray(probs_uncalibrated, dtype=np.float64), y_true)),
            reliability_before=before,
        )
    result["risk_coverage"] = risk_coverage(probs, y_true)
    if choice is not None:
        result["abstention"] = abstention_metrics(probs, y_true, choice, fallback_index, ood_scores)
    return result
