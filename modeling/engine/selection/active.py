"""Active-learning query strategies, cold start, stopping signal and a pool-based simulator.

Plain Python (numpy / scikit-learn): no Django. Uncertainty scores are computed from the
probabilities the caller passes in; the app passes calibrated probabilities of the current model.
Every score follows one convention: higher means "label this sooner".
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import entropy as shannon_entropy
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

UNCERTAINTY_STRATEGIES = ("least_confidence", "margin", "entropy")
STRATEGIES = ("random", *UNCERTAINTY_STRATEGIES, "margin_diverse")
DEFAULT_CANDIDATE_FACTOR = 10
# Small lbfgs fits run ~40x slower with several OpenBLAS/OpenMP pools spinning against each other on a busy
# 2-core machine (measured: 25 s vs 0.6 s for 2,299 x 384, 31 classes); one BLAS thread per fit is fastest.
BLAS_THREADS = 1
# Inverse L2 strength of the simulation probe. Measured on the full pools: CIC (10k noisy labels, 118 classes)
# macro-F1 0.36 at C=0.1 vs 0.26 at C=1 (overfits the noise); smp2017 0.908 either way.
PROBE_C = 0.1


# --- uncertainty -------------------------------------------------------------------------------


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must be a (n, k>=2) matrix, got shape {probs.shape}")
    return probs


def least_confidence(probs: np.ndarray) -> np.ndarray:
    probs = _check_probs(probs)
    return 1.0 - probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): a near tie between the two best classes scores close to 1."""
    probs = _check_probs(probs)
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(probs: np.ndarray) -> np.ndarray:
    probs = _check_probs(probs)
    return shannon_entropy(probs, axis=1)


def max_probability(probs: np.ndarray) -> np.ndarray:
    return _check_probs(probs).max(axis=1)


_SCORERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "margin_diverse": margin,
}
# The zero-shot cold start ranks what is left after its batch by the zero-shot confidence, clear examples first.
_PRIORITY_SCORERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {**_SCORERS, "zero_shot": max_probability}


def uncertainty_scores(probs: np.ndarray, strategy: str) -> np.ndarray:
    if strategy not in _SCORERS:
        raise ValueError(f"strategy {strategy!r} has no uncertainty score; choose one of {sorted(_SCORERS)}")
    return _SCORERS[strategy](probs)


def _top_indices(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k highest scores; exact ties are broken randomly (not by position)."""
    jitter = rng.random(len(scores))
    order = np.lexsort((jitter, -scores))
    return order[:k]


# --- diversity ---------------------------------------------------------------------------------


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def k_center_greedy(
    features: np.ndarray, k: int, anchors: np.ndarray | None = None, first: int | None = None
) -> np.ndarray:
    """Pick k rows that cover `features` (each new pick is the row farthest from all picks and anchors).

    Distances are Euclidean on L2-normalised rows (a monotone function of cosine). `anchors` are
    already-labelled points the batch should stay away from. Returns row indices into `features`.
    """
    x = _unit_rows(features)
    n = len(x)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if anchors is not None and len(anchors):
        a = _unit_rows(anchors)
        min_dist = np.full(n, np.inf, dtype=np.float32)
        for start in range(0, len(a), 2048):
            block = a[start : start + 2048]
            d = np.maximum(2.0 - 2.0 * (x @ block.T), 0.0).min(axis=1)
            min_dist = np.minimum(min_dist, d)
        current = int(np.argmax(min_dist))
    else:
        current = 0 if first is None else int(first)
        min_dist = np.full(n, np.inf, dtype=np.float32)
    picks = [current]
    min_dist = np.minimum(min_dist, np.maximum(2.0 - 2.0 * (x @ x[current]), 0.0))
    min_dist[current] = -1.0
    while len(picks) < k:
        current = int(np.argmax(min_dist))
        picks.append(current)
        min_dist = np.minimum(min_dist, np.maximum(2.0 - 2.0 * (x @ x[current]), 0.0))
        min_dist[picks] = -1.0
    return np.asarray(picks, dtype=np.int64)


# --- batch selection ---------------------------------------------------------------------------


def select_batch(
    strategy: str,
    batch_size: int,
    *,
    probs: np.ndarray | None = None,
    features: np.ndarray | None = None,
    labelled_features: np.ndarray | None = None,
    labelled_counts: np.ndarray | None = None,
    candidate_factor: int = DEFAULT_CANDIDATE_FACTOR,
    diversity: str = "kmeans",
    seed: int = 0,
) -> np.ndarray:
    """Choose `batch_size` rows of the unlabelled pool (rows of `probs` / `features`), best first.

    - random: a seeded random sample (the control).
    - least_confidence / margin / entropy: the top uncertainty scores.
    - margin_diverse: the top `candidate_factor * batch_size` by margin, then spread over the feature space:
      `diversity="kmeans"` (default) clusters the candidates (k-means weighted by margin x rare-pair weight,
      see `rare_pair_weight`) and takes the highest-weighted item of each cluster's core (its half nearest the
      centre); `"kcenter"` runs k-center greedy away from the labelled set.

    `labelled_counts` (labels per class so far, in the column order of `probs`) feeds the rare-pair weight;
    without it every class counts the same and margin_diverse ranks by margin alone.
    """
    rng = np.random.default_rng(seed)
    n = len(probs) if probs is not None else (len(features) if features is not None else 0)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    batch_size = min(batch_size, n)
    if strategy == "random":
        return rng.permutation(n)[:batch_size]
    if probs is None:
        raise ValueError(f"strategy {strategy!r} needs model probabilities; use cold_start when there is no model")
    scores = uncertainty_scores(probs, strategy)
    if strategy != "margin_diverse":
        return _top_indices(scores, batch_size, rng)
    if features is None:
        raise ValueError("margin_diverse needs the pool's feature vectors")
    if diversity not in ("kmeans", "kcenter"):
        raise ValueError(f"diversity must be 'kmeans' or 'kcenter', got {diversity!r}")
    # The candidates are the plain top-margin set: weighting them too found fewer of CIC's unlabelled classes
    # early and lost on CIC; the rare-pair weight only steers the clusters and the pick within them.
    candidates = _top_indices(scores, min(n, candidate_factor * batch_size), rng)
    weights = scores[candidates]
    if labelled_counts is not None:
        weights = weights * rare_pair_weight(probs[candidates], labelled_counts)
    if diversity == "kcenter":
        chosen = k_center_greedy(features[candidates], batch_size, anchors=labelled_features, first=0)
    else:
        chosen = _weighted_kmeans_pick(features[candidates], weights, batch_size, seed)
    picked = candidates[chosen]
    # Report the batch highest-weighted first so a queue ordered by priority starts with the most useful item.
    return picked[np.argsort(-weights[chosen], kind="stable")]


def rare_pair_weight(probs: np.ndarray, labelled_counts: np.ndarray) -> np.ndarray:
    """1 / sqrt(1 + n), n = labels so far of the rarer of each row's two most probable classes.

    Macro-F1 weighs every class the same, but margin keeps returning to the long boundaries of the big classes.
    A near tie that involves a class with few labels teaches that class more per label, so it is worth more; the
    rarer class of the pair decides (the top class alone gained less: docs/ACTIVE_LEARNING.md)."""
    probs = _check_probs(probs)
    counts = np.asarray(labelled_counts, dtype=np.float64)
    if counts.shape != (probs.shape[1],):
        raise ValueError(f"labelled_counts needs one count per class ({probs.shape[1]}), got shape {counts.shape}")
    top2 = np.argpartition(probs, -2, axis=1)[:, -2:]
    return 1.0 / np.sqrt(1.0 + counts[top2].min(axis=1))


def _weighted_kmeans_pick(features: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means (weighted by `weights`) over the candidates, then one pick per cluster: the highest-weighted
    member of the cluster's core (the half nearest its centre).

    The core rule sits between "most uncertain member" (often the cluster's stray edge point, the same outlier
    problem as k-center) and "member nearest the centre" (typical, but gives up uncertainty): of the three it is
    the only one that improved labels-to-target on both smp2017 (20 seeds) and CIC (docs/ACTIVE_LEARNING.md)."""
    x = _unit_rows(features)
    k = min(k, len(x))
    with threadpool_limits(BLAS_THREADS):
        kmeans = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x, sample_weight=np.maximum(weights, 1e-6))
    picks = []
    for cluster in range(k):
        members = np.flatnonzero(kmeans.labels_ == cluster)
        if len(members):
            dist = np.sum((x[members] - kmeans.cluster_centers_[cluster]) ** 2, axis=1)
            core = members[dist <= np.median(dist)]
            picks.append(core[np.argmax(weights[core])])
    if len(picks) < k:  # empty clusters: fill with the most uncertain candidates not yet taken
        taken = set(picks)
        picks.extend([i for i in np.argsort(-weights, kind="stable") if i not in taken][: k - len(picks)])
    return np.asarray(picks, dtype=np.int64)


def cold_start(features: np.ndarray, batch_size: int, n_clusters: int | None = None, seed: int = 0) -> np.ndarray:
    """No model yet: k-means on the pool's features, then sample every cluster in proportion to its size.

    Every cluster gets at least one pick when the batch is large enough, so small regions are covered.
    """
    x = _unit_rows(features)
    n = len(x)
    batch_size = min(batch_size, n)
    if batch_size <= 0:
        return np.empty(0, dtype=np.int64)
    k = n_clusters or max(1, min(batch_size, round(np.sqrt(n))))
    k = min(k, n)
    with threadpool_limits(BLAS_THREADS):
        kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    assignment = kmeans.labels_
    sizes = np.bincount(assignment, minlength=k)
    quota = _proportional_quota(sizes, batch_size)
    rng = np.random.default_rng(seed)
    picks: list[np.ndarray] = []
    for cluster in range(k):
        if quota[cluster]:
            members = np.flatnonzero(assignment == cluster)
            picks.append(rng.choice(members, size=quota[cluster], replace=False))
    picked = np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)
    return rng.permutation(picked).astype(np.int64)


def zero_shot_cold_start(probs: np.ndarray, batch_size: int) -> np.ndarray:
    """No trained model yet, but zero-shot probabilities from the taxonomy: each predicted label's most
    confident texts in turn (labels in the order of their best confidence), so the first batch covers the label
    set with clear examples. Measured against margin_diverse under the same scores, which picks the texts the
    zero-shot model confuses and lost to every other start (docs/ACTIVE_LEARNING.md, "Zero-shot cold start")."""
    probs = _check_probs(probs)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    queues = []
    for label in range(probs.shape[1]):
        members = np.flatnonzero(predicted == label)
        if len(members):
            queues.append(members[np.argsort(-confidence[members], kind="stable")])
    queues.sort(key=lambda queue: -confidence[queue[0]])
    picks: list[int] = []
    depth = 0
    while len(picks) < min(batch_size, len(probs)):
        picks += [int(queue[depth]) for queue in queues if depth < len(queue)]
        depth += 1
    return np.asarray(picks[:batch_size], dtype=np.int64)


def _proportional_quota(sizes: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder allocation of `total` picks over clusters by size, at least one each when possible."""
    share = sizes / max(sizes.sum(), 1) * total
    quota = np.minimum(np.floor(share).astype(np.int64), sizes)
    if total >= len(sizes):
        quota = np.maximum(quota, 1)
    while quota.sum() > total:  # the minimum of one pushed us over: take back from the largest quotas
        quota[int(np.argmax(quota - share))] -= 1
    remainder = share - quota
    for cluster in np.argsort(-remainder, kind="stable"):
        if quota.sum() >= total:
            break
        if quota[cluster] < sizes[cluster]:
            quota[cluster] += 1
    while quota.sum() < total:  # clusters too small for their share: fill wherever room is left
        quota[int(np.argmax(sizes - quota))] += 1
    return quota


def priority_scores(strategy: str, batch: np.ndarray, n: int, probs: np.ndarray | None = None) -> np.ndarray:
    """Priorities for the whole unlabelled pool: the selected batch first (1 + rank order, > 1), then the
    rest by uncertainty in [0, 1] (or 0 without a model), so a queue sorted by priority is well defined."""
    out = np.zeros(n, dtype=np.float64)
    if probs is not None and strategy in _PRIORITY_SCORERS:
        raw = _PRIORITY_SCORERS[strategy](probs)
        span = raw.max() - raw.min()
        out = (raw - raw.min()) / span if span > 0 else np.zeros(n)
    m = len(batch)
    out[batch] = 1.0 + (m - np.arange(m)) / max(m, 1)
    return out


# --- stopping signal ---------------------------------------------------------------------------


def prediction_agreement(previous: Sequence, current: Sequence) -> float:
    """Share of a held set on which two successive models predict the same label."""
    if len(previous) != len(current) or not len(current):
        raise ValueError("agreement needs two equally long, non-empty prediction lists")
    return float(np.mean(np.asarray(previous, dtype=object) == np.asarray(current, dtype=object)))


def should_stop(agreements: Sequence[float], threshold: float = 0.99, rounds: int = 3) -> bool:
    """True once the last `rounds` successive-model agreements all reach `threshold`."""
    recent = list(agreements)[-rounds:]
    return len(recent) == rounds and all(a >= threshold for a in recent)


# --- simulation --------------------------------------------------------------------------------

FitFn = Callable[[np.ndarray, np.ndarray, int], "ProbModel"]


class ProbModel:
    """What the simulator needs from a head: class probabilities over a fixed class order."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class LogisticProbe(ProbModel):
    """Multinomial logistic regression on standardised features: the route-1 probe, cheap to refit.

    Classes absent from the labelled set get probability 0, so every model speaks the same n_classes.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, c: float = PROBE_C, seed: int = 0) -> None:
        with threadpool_limits(BLAS_THREADS):
            self._fit(x, y, n_classes, c, seed)

    def _fit(self, x: np.ndarray, y: np.ndarray, n_classes: int, c: float, seed: int) -> None:
        self.n_classes = n_classes
        self.scaler = StandardScaler().fit(x)
        self.present = np.unique(y)
        self.model: LogisticRegression | None = None
        if len(self.present) > 1:
            self.model = LogisticRegression(C=c, max_iter=300, random_state=seed)
            with warnings.catch_warnings():
                # Early rounds on 100+ classes have fewer than two examples per class: expected, not a problem.
                warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
                self.model.fit(self.scaler.transform(x), y)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), self.n_classes), dtype=np.float64)
        if self.model is None:
            out[:, self.present[0]] = 1.0
            return out
        with threadpool_limits(BLAS_THREADS):
            out[:, self.model.classes_] = self.model.predict_proba(self.scaler.transform(x))
        return out


def fit_logistic_probe(x: np.ndarray, y: np.ndarray, n_classes: int) -> LogisticProbe:
    return LogisticProbe(x, y, n_classes)


@dataclass
class CurvePoint:
    labels: int
    macro_f1: float
    accuracy: float
    seconds: float = 0.0


@dataclass
class SimulationResult:
    strategy: str
    curve: list[CurvePoint] = field(default_factory=list)

    def labels_to_reach(self, target: float) -> int | None:
        for point in self.curve:
            if point.macro_f1 >= target:
                return point.labels
        return None


def evaluate(model: ProbModel, x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, float]:
    pred = model.predict_proba(x).argmax(axis=1)
    macro = f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0)
    return float(macro), float(accuracy_score(y, pred))


def initial_seed_set(pool_x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The shared starting set for every strategy of one simulation: a seeded random sample."""
    return np.random.default_rng(seed).permutation(len(pool_x))[: min(size, len(pool_x))]


def simulate(
    strategy: str,
    pool_x: np.ndarray,
    pool_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    seed_indices: np.ndarray,
    batch_size: int,
    rounds: int,
    *,
    fit: FitFn = fit_logistic_probe,
    seed: int = 0,
    progress: Callable[[str, CurvePoint], None] | None = None,
    select_options: dict | None = None,
) -> SimulationResult:
    """Pool-based simulation with the pool's labels as the oracle.

    Round 0 trains on the seed set; each of `rounds` rounds then queries `batch_size` more labels with
    `strategy`, retrains, and evaluates on the test set.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    labelled = np.zeros(len(pool_x), dtype=bool)
    labelled[seed_indices] = True
    result = SimulationResult(strategy)
    for round_no in range(rounds + 1):
        started = time.perf_counter()
        idx = np.flatnonzero(labelled)
        model = fit(pool_x[idx], pool_y[idx], n_classes)
        macro, acc = evaluate(model, test_x, test_y, n_classes)
        point = CurvePoint(int(labelled.sum()), macro, acc)
        if round_no < rounds:
            unl = np.flatnonzero(~labelled)
            if len(unl) == 0:
                point.seconds = time.perf_counter() - started
                result.curve.append(point)
                break
            probs = None if strategy == "random" else model.predict_proba(pool_x[unl])
            batch = select_batch(
                strategy,
                batch_size,
                probs=probs,
                features=pool_x[unl],
                labelled_features=pool_x[idx],
                labelled_counts=np.bincount(pool_y[idx], minlength=n_classes),
                seed=seed * 1000 + round_no,
                **(select_options or {}),
            )
            labelled[unl[batch]] = True
        point.seconds = time.perf_counter() - started
        result.curve.append(point)
        if progress:
            progress(strategy, point)
    return result
