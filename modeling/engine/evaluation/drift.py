"""Drift between production traffic and a model's training data, without labels.

- Novelty share (the feature alert for partial drift): the reference is split at random into an index half
  and a calibration half. Every calibration row and every window row gets its distance to the index (mean
  cosine distance to its `k` nearest index rows, after subtracting the index mean: sentence embeddings share
  a large common direction that hides topic differences); q is the calibration rows' `quantile` (80th
  percentile). Without drift, window and calibration rows are exchangeable (nothing was fitted on either),
  so the number K of window rows above q follows a known law (negative hypergeometric in the two sample
  sizes: no model, and the reference's finite size is in it), with mean about 20 % of the window. The alert
  fires when P(K >= observed) <= `alpha` (1 %): its false-alert rate per check is at most 1 %. A share P of
  the traffic from regions the training data does not cover raises the share by about P times the part of
  those rows that lands beyond q, whatever the rest of the window does.
- Domain AUC (reported, and an alert for a change of the whole traffic): a domain classifier (logistic
  regression, cross-validated) tries to tell the window's feature vectors from the reference's. ROC AUC 0.5
  means it cannot; 1.0 means the two never overlap. Its threshold is the largest of a floor and the mean +
  `null_sigmas` sd of the same classifier on disjoint halves of the reference. A linear classifier over the
  whole window is weak when only part of the traffic is new, which is what the novelty share is for.
- Predicted-label drift: the Jensen-Shannon distance (base 2, in [0, 1]) between the window's predicted
  labels and the labels the model is expected to predict on training-like traffic: the training shares
  times the validation confusion P(predicted | true), so the model's own errors are not drift. Its null is
  two-sample: each draw re-samples the reference labels and the confusion rows at their own sizes (both are
  finite samples) and a window at its size from the expected shares; the threshold is the null's 99th
  percentile (at least a floor).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import nhypergeom
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
# Measured on hwu64 e5-small features (docs/BENCHMARKS.md §9): the 80th percentile and the nearest
# neighbour gave the most power at 30-40 % new traffic; the false-alert rate is alpha whatever they are.
NOVELTY_QUANTILE = 0.8
NOVELTY_ALPHA = 0.01
NOVELTY_K = 1

Confusion = tuple[list[str], list[list[int]]]


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
class NoveltyDrift:
    share: float  # of window rows farther from the index half than the calibration half's `quantile`
    threshold: float  # the smallest share with P(K >= share * n_window) <= alpha without drift
    expected_share: float
    p_value: float
    quantile: float
    alpha: float
    k: int
    n_index: int
    n_calibration: int
    n_window: int

    @property
    def alert(self) -> bool:
        return self.p_value <= self.alpha

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "alert": self.alert}


@dataclass(frozen=True)
class LabelDrift:
    js_distance: float
    threshold: float
    window_shares: dict[str, float]
    reference_shares: dict[str, float]
    expected_shares: dict[str, float]
    confusion: bool  # whether the expected shares went through a validation confusion matrix

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


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distances(index: np.ndarray, rows: np.ndarray, k: int = NOVELTY_K, *, centre: bool = True) -> np.ndarray:
    """Mean cosine distance of each of `rows` to its `k` nearest rows of `index`, both centred on the index
    mean unless `centre` is false."""
    offset = np.asarray(index, dtype=np.float64).mean(axis=0) if centre else 0.0
    distances = 1.0 - _unit_rows(rows - offset) @ _unit_rows(index - offset).T
    k = max(1, min(k, distances.shape[1]))
    return np.partition(distances, k - 1, axis=1)[:, :k].mean(axis=1)


def exceedance_tail(n_window: int, n_calibration: int, rank: int) -> np.ndarray:
    """P(K >= k) for k = 0..n_window, where K counts the window values above the `rank`-th largest of
    n_calibration exchangeable values: in a random order of the pooled values (largest first), K is the
    number of window values drawn before the rank-th calibration value, a negative hypergeometric law."""
    k = np.arange(n_window + 1)
    return nhypergeom(n_window + n_calibration, n_window, rank).sf(k - 1)


def novelty_drift(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    quantile: float = NOVELTY_QUANTILE,
    alpha: float = NOVELTY_ALPHA,
    k: int = NOVELTY_K,
    centre: bool = True,
    seed: int = 0,
) -> NoveltyDrift:
    if min(len(reference), len(window)) < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} rows on each side, got {len(reference)} and {len(window)}")
    order = np.random.default_rng(seed + 2).permutation(len(reference))
    half = len(reference) // 2
    index, calibration = reference[order[:half]], reference[order[half:]]
    calibration_distances = knn_distances(index, calibration, k, centre=centre)
    window_distances = knn_distances(index, window, k, centre=centre)
    rank = max(1, int(np.floor((1.0 - quantile) * (len(calibration) + 1))))
    q = np.sort(calibration_distances)[::-1][rank - 1]
    above = int((window_distances > q).sum())
    tail = exceedance_tail(len(window), len(calibration), rank)
    critical = int(np.argmax(tail <= alpha)) if (tail <= alpha).any() else len(window) + 1
    return NoveltyDrift(
        share=round(above / len(window), 6),
        threshold=round(critical / len(window), 6),
        expected_share=round(rank / (len(calibration) + 1), 6),
        p_value=round(float(tail[above]), 8),
        quantile=quantile,
        alpha=alpha,
        k=k,
        n_index=len(index),
        n_calibration=len(calibration),
        n_window=len(window),
    )


def _shares(labels: list[str], keys: list[str]) -> np.ndarray:
    counts = Counter(labels)
    vector = np.asarray([counts.get(key, 0) for key in keys], dtype=np.float64)
    return vector / max(vector.sum(), 1.0)


def _confusion_counts(keys: list[str], confusion: Confusion | None) -> np.ndarray:
    """Counts (true x predicted) over `keys`; a label the matrix has no validation row for is taken as
    always predicted as itself."""
    counts = np.zeros((len(keys), len(keys)))
    rows = set()
    if confusion is not None:
        labels, matrix = confusion
        index = {key: i for i, key in enumerate(keys)}
        for t, row in zip(labels, matrix, strict=True):
            if t in index and sum(row):
                rows.add(index[t])
                for p, count in zip(labels, row, strict=True):
                    counts[index[t], index[p]] += count
    for i in range(len(keys)):
        if i not in rows:
            counts[i, i] = 1.0
    return counts


def _rows_normalised(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum(axis=1, keepdims=True)


def label_drift(
    window_labels: list[str],
    reference_labels: list[str],
    *,
    confusion: Confusion | None = None,
    floor: float = JS_FLOOR,
    samples: int = LABEL_NULL_SAMPLES,
    quantile: float = LABEL_NULL_QUANTILE,
    seed: int = 0,
) -> LabelDrift:
    """`confusion` is (labels, counts[true][predicted]) of the model on validation data, as in the version's
    metrics; without it the model is taken as never wrong."""
    if not window_labels or not reference_labels:
        raise ValueError("both label lists must be non-empty")
    keys = sorted(set(window_labels) | set(reference_labels) | set(confusion[0] if confusion else []))
    window, reference = _shares(window_labels, keys), _shares(reference_labels, keys)
    counts = _confusion_counts(keys, confusion)
    expected = reference @ _rows_normalised(counts)
    distance = float(jensenshannon(window, expected, base=2))
    null = _label_null(expected, reference, counts, len(window_labels), len(reference_labels), samples, seed)
    threshold = max(floor, float(np.quantile(null, quantile)))
    return LabelDrift(
        js_distance=round(distance, 6),
        threshold=round(threshold, 6),
        window_shares=_rounded(keys, window),
        reference_shares=_rounded(keys, reference),
        expected_shares=_rounded(keys, expected),
        confusion=confusion is not None,
    )


def _label_null(
    expected: np.ndarray,
    reference: np.ndarray,
    counts: np.ndarray,
    n_window: int,
    n_reference: int,
    samples: int,
    seed: int,
) -> np.ndarray:
    """JS distances between a window drawn from the expected shares and the expected shares re-estimated
    from a re-drawn reference and re-drawn confusion rows: the statistic's spread when nothing drifted."""
    rng = np.random.default_rng(seed)
    row_totals = counts.sum(axis=1).round().astype(np.int64)
    row_probs = _rows_normalised(counts)
    null = np.empty(samples)
    for s in range(samples):
        window = rng.multinomial(n_window, expected) / n_window
        shares = rng.multinomial(n_reference, reference) / n_reference
        rows = np.stack([rng.multinomial(max(n, 1), p) for n, p in zip(row_totals, row_probs, strict=True)])
        null[s] = jensenshannon(window, shares @ _rows_normalised(rows.astype(np.float64)), base=2)
    return null


def _rounded(keys: list[str], values: np.ndarray) -> dict[str, float]:
    return {key: round(float(v), 6) for key, v in zip(keys, values, strict=True)}


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
