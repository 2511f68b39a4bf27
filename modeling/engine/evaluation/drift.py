"""Drift between production traffic and a model's training data, without labels.

- Feature drift: a domain classifier (logistic regression, cross-validated) tries to tell the window's feature
  vectors from the training snapshot's. ROC AUC 0.5 means it cannot; 1.0 means the two never overlap.
- The alert threshold comes from a null measured on the reference itself: the same classifier on two
  disjoint random halves of the training snapshot (same distribution by construction), repeated. The
  threshold is the largest of a floor and the null's mean + `null_sigmas` standard deviations, so a small
  window (whose AUC is noisier) needs a larger AUC to alert.
- Predicted-label drift: the Jensen-Shannon distance (base 2, in [0, 1]) between the window's predicted
  labels and the training labels, against the 99th percentile of the same distance for multinomial
  samples of the window's size drawn from the training labels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

AUC_FLOOR = 0.65
NULL_SIGMAS = 3.0
NULL_REPEATS = 10
LABEL_NULL_SAMPLES = 500
LABEL_NULL_QUANTILE = 0.99
JS_FLOOR = 0.05
MIN_SAMPLES = 20


@dataclass(frozen=True)
class FeatureDrift:
    auc: float
    threshold: float
    null_mean: float
    null_std: float
    n_reference: int
    n_window: int

    @property
    def alert(self) -> bool:
        return self.auc > self.threshold

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "alert": self.alert}


@dataclass(frozen=True)
class LabelDrift:
    js_distance: float
    threshold: float
    window_shares: dict[str, float]
    reference_shares: dict[str, float]

    @property
    def alert(self) -> bool:
        return self.js_distance > self.threshold

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "alert": self.alert}


def domain_auc(reference: np.ndarray, window: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a classifier separating `window` rows from `reference` rows. The larger
    side is subsampled to the smaller one, so the AUC does not depend on the ratio of the two sizes."""
    rng = np.random.default_rng(seed)
    n = min(len(reference), len(window))
    if n < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} rows on each side, got {len(reference)} and {len(window)}")
    a = reference[rng.choice(len(reference), n, replace=False)]
    b = window[rng.choice(len(window), n, replace=False)]
    x = np.vstack([a, b]).astype(np.float64)
    y = np.r_[np.zeros(n), np.ones(n)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    splits = StratifiedKFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    scores = cross_val_predict(classifier, x, y, cv=splits, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def null_domain_aucs(
    reference: np.ndarray, n_window: int, *, repeats: int = NULL_REPEATS, seed: int = 0
) -> list[float]:
    """Domain AUCs between two disjoint random halves of `reference`, each as large as the compared window
    (at most half the reference)."""
    rng = np.random.default_rng(seed + 1)
    size = min(n_window, len(reference) // 2)
    aucs = []
    for repeat in range(repeats):
        order = rng.permutation(len(reference))
        aucs.append(domain_auc(reference[order[:size]], reference[order[size : 2 * size]], seed=seed + repeat))
    return aucs


def feature_drift(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    floor: float = AUC_FLOOR,
    null_sigmas: float = NULL_SIGMAS,
    repeats: int = NULL_REPEATS,
    seed: int = 0,
) -> FeatureDrift:
    auc = domain_auc(reference, window, seed=seed)
    null = np.asarray(null_domain_aucs(reference, len(window), repeats=repeats, seed=seed))
    threshold = max(floor, float(null.mean() + null_sigmas * null.std(ddof=1 if len(null) > 1 else 0)))
    return FeatureDrift(
        auc=round(auc, 6),
        threshold=round(threshold, 6),
        null_mean=round(float(null.mean()), 6),
        null_std=round(float(null.std()), 6),
        n_reference=int(min(len(reference), len(window))),
        n_window=len(window),
    )


def _shares(labels: list[str], keys: list[str]) -> np.ndarray:
    counts = Counter(labels)
    vector = np.asarray([counts.get(key, 0) for key in keys], dtype=np.float64)
    return vector / max(vector.sum(), 1.0)


def label_drift(
    window_labels: list[str],
    reference_labels: list[str],
    *,
    floor: float = JS_FLOOR,
    samples: int = LABEL_NULL_SAMPLES,
    quantile: float = LABEL_NULL_QUANTILE,
    seed: int = 0,
) -> LabelDrift:
    if not window_labels or not reference_labels:
        raise ValueError("both label lists must be non-empty")
    keys = sorted(set(window_labels) | set(reference_labels))
    window, reference = _shares(window_labels, keys), _shares(reference_labels, keys)
    distance = float(jensenshannon(window, reference, base=2))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(window_labels), reference, size=samples) / len(window_labels)
    null = np.asarray([jensenshannon(draw, reference, base=2) for draw in draws])
    threshold = max(floor, float(np.quantile(null, quantile)))
    return LabelDrift(
        js_distance=round(distance, 6),
        threshold=round(threshold, 6),
        window_shares={key: round(float(v), 6) for key, v in zip(keys, window, strict=True)},
        reference_shares={key: round(float(v), 6) for key, v in zip(keys, reference, strict=True)},
    )


def reliability_from_confidence(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> dict:
    """Reliability bins from each answer's confidence and whether it was right (production traffic, where a
    label arrived): the same shape as calibration.reliability_bins, so the same diagram draws it."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        mean_conf = float(confidence[mask].mean()) if count else float((edges[b] + edges[b + 1]) / 2)
        accuracy = float(correct[mask].mean()) if count else 0.0
        if count:
            ece += count / len(confidence) * abs(accuracy - mean_conf)
        bins.append({"confidence": round(mean_conf, 6), "accuracy": round(accuracy, 6), "count": count})
    return {"bins": bins, "ece": round(ece, 6)}
