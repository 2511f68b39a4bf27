"""Label quality: out-of-fold probabilities, likely label errors (cleanlab), near-duplicate conflicts.

Plain Python: no Django. The out-of-fold probabilities come through the route seam: the label check's route
(route 1's frozen features under a plain logistic regression by default) is fitted on all folds but one and
its ``Fitted.encode`` scores the held-out fold, as a version would; with the feature cache a full check costs
a few k-fold refits of the head, and each text's backbone forward pass at most once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from modeling.engine.evaluation.calibration import probabilities
from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import Examples, FitContext, encode_labels
from modeling.engine.selection.active import BLAS_THREADS

DUPLICATE_COSINE = 0.97
LABEL_CHECK_ROUTE = "probe"
# Route 1's frozen features under scikit-learn's logistic regression alone (standardised, C = 1): no TF-IDF
# part and no class weights, so the probabilities say what the features say about each label.
LABEL_CHECK_PARAMS: dict[str, Any] = {"head_kind": "sklearn_lr", "hybrid": False, "loss": "none"}


@dataclass
class OutOfFold:
    probs: np.ndarray  # (n, n_classes) in the context's label order, each row from a fit that never saw it
    features: np.ndarray | None  # the route's embedding of every text (None for a route without one)


def out_of_fold(
    examples: Examples,
    ctx: FitContext,
    route: str = LABEL_CHECK_ROUTE,
    params: dict[str, Any] | None = None,
    n_folds: int = 5,
) -> OutOfFold:
    """P(class | text) for every example from the route fitted on the other folds (stratified k-fold, seeded
    by ``ctx.seed``), and the route's embedding of every text.

    Classes rarer than `n_folds` still work: they are not stratified, and a fold whose training part lacks a
    class gives it (almost) zero probability. The held-out fold is the fit's validation split."""
    y = encode_labels(examples.labels, list(ctx.label_keys), "labels")
    if len(y) < 2 * n_folds:
        raise ValueError(f"need at least {2 * n_folds} labelled items for {n_folds}-fold checks, got {len(y)}")
    fitter = get_route(route)
    route_params = parse_params(route, LABEL_CHECK_PARAMS if params is None else params)
    fold_ctx = replace(ctx, progress=None, checkpoint_dir=None)
    n_classes = len(ctx.label_keys)
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    features: np.ndarray | None = None
    counts = np.bincount(y, minlength=n_classes)
    strata = np.where(counts[y] >= n_folds, y, -1)  # singletons go wherever the fold split puts them
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=ctx.seed)
    with threadpool_limits(BLAS_THREADS):
        for train_idx, held_idx in folds.split(np.zeros(len(y)), strata):
            ctx.check_cancel()
            held = _subset(examples, held_idx)
            present = np.unique(y[train_idx])
            if len(present) == 1:
                probs[held_idx, present[0]] = 1.0
                encoded = None
            else:
                fitted = fitter.fit(_subset(examples, train_idx), held, route_params, fold_ctx)
                encoded = fitted.encode(held.texts)
                probs[held_idx] = probabilities(encoded.logits)
            if encoded is not None and encoded.features is not None:
                if features is None:
                    features = np.zeros((len(y), encoded.features.shape[1]), dtype=np.float32)
                features[held_idx] = encoded.features
    return OutOfFold(probs, features)


def out_of_fold_probs(
    features: np.ndarray, labels: np.ndarray, n_classes: int, n_folds: int = 5, seed: int = 0, c: float = 1.0
) -> np.ndarray:
    """P(class | x) for every row of a feature matrix from a logistic regression that never saw that row
    (stratified k-fold): for callers that hold features already (the doubtful-label filter of training).

    Classes rarer than `n_folds` still work: StratifiedKFold only warns, and a fold whose training part
    lacks a class gives that class probability 0.
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    if len(x) < 2 * n_folds:
        raise ValueError(f"need at least {2 * n_folds} labelled items for {n_folds}-fold checks, got {len(x)}")
    with threadpool_limits(BLAS_THREADS):
        return _out_of_fold(x, y, n_classes, n_folds, seed, c)


def _out_of_fold(x: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int, seed: int, c: float) -> np.ndarray:
    probs = np.zeros((len(x), n_classes), dtype=np.float64)
    # Stratify on classes with enough members; singletons go wherever the fold split puts them.
    counts = np.bincount(y, minlength=n_classes)
    strata = np.where(counts[y] >= n_folds, y, -1)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train_idx, held_idx in folds.split(x, strata):
        scaler = StandardScaler().fit(x[train_idx])
        present = np.unique(y[train_idx])
        if len(present) == 1:
            probs[held_idx, present[0]] = 1.0
            continue
        model = LogisticRegression(C=c, max_iter=300, random_state=seed)
        model.fit(scaler.transform(x[train_idx]), y[train_idx])
        probs[held_idx[:, None], model.classes_[None, :]] = model.predict_proba(scaler.transform(x[held_idx]))
    return probs


def _subset(examples: Examples, index: np.ndarray) -> Examples:
    weights = None if examples.weights is None else examples.weights[index]
    return Examples([examples.texts[i] for i in index], [examples.labels[i] for i in index], weights)


@dataclass(frozen=True)
class LabelIssue:
    index: int
    given: int
    suggested: int
    quality: float  # cleanlab self-confidence: P(given label), low = suspicious
    flagged: bool  # confident learning flags it (prune_by_noise_rate)


def rank_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> list[LabelIssue]:
    """Every item ranked most-suspicious first: cleanlab's flagged issues (by self-confidence), then the
    rest by self-confidence, so precision@k is defined for any k."""
    y = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(pred_probs, dtype=np.float64)
    # cleanlab wants every class column to sum above zero; a class never predicted gets a tiny floor.
    probs = np.clip(probs, 1e-8, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    flagged_order = find_label_issues(y, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    flagged = np.zeros(len(y), dtype=bool)
    flagged[flagged_order] = True
    rest = np.flatnonzero(~flagged)
    rest = rest[np.argsort(quality[rest], kind="stable")]
    order = np.concatenate([flagged_order, rest]).astype(np.int64)
    suggested = probs.argmax(axis=1)
    return [LabelIssue(int(i), int(y[i]), int(suggested[i]), float(quality[i]), bool(flagged[i])) for i in order]


def precision_at_k(ranked: list[int], truly_wrong: set[int], k: int) -> float:
    top = ranked[:k]
    return sum(1 for i in top if i in truly_wrong) / max(len(top), 1)


@dataclass(frozen=True)
class Conflict:
    a: int
    b: int
    similarity: float


def near_duplicate_conflicts(
    features: np.ndarray,
    labels: np.ndarray,
    threshold: float = DUPLICATE_COSINE,
    block: int = 1024,
    center: bool = True,
) -> list[Conflict]:
    """Pairs (a < b) whose cosine similarity is >= threshold but whose labels differ, most similar first.

    Cosine is taken after subtracting the mean feature vector: sentence embeddings such as e5 share one strong
    common direction, so raw cosines of unrelated texts sit near 0.9 (CIC train: 6,153 "pairs" >= 0.97 raw,
    none with identical text; 66 after centering, which read as rewordings). Computed in row blocks so 10k
    items never need a full n x n matrix in memory."""
    x = np.asarray(features, dtype=np.float32)
    if center and len(x) > 1:
        x = x - x.mean(axis=0, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = np.asarray(labels)
    found: list[Conflict] = []
    for start in range(0, len(x), block):
        sims = x[start : start + block] @ x.T
        rows, cols = np.nonzero(sims >= threshold)
        a = rows + start
        keep = (cols > a) & (y[a] != y[cols])
        found.extend(
            Conflict(int(i), int(j), float(sims[i - start, j])) for i, j in zip(a[keep], cols[keep], strict=True)
        )
    found.sort(key=lambda c: -c.similarity)
    return found


def flip_labels(labels: np.ndarray, n_classes: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inject noise for measurement: a seeded `share` of labels moved to a different random class.

    Returns (noisy labels, indices flipped)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels, dtype=np.int64).copy()
    flipped = rng.choice(len(y), size=round(share * len(y)), replace=False)
    offsets = rng.integers(1, n_classes, size=len(flipped))
    y[flipped] = (y[flipped] + offsets) % n_classes
    return y, np.sort(flipped)
