"""Doubtful train labels: out-of-fold confident learning (cleanlab) on a cheap model's probabilities.

The out-of-fold probabilities come from the frozen features when the caller has them (a standardised linear
probe, ``selection.quality.out_of_fold_probs``), else from character 1-3-gram TF-IDF and a logistic loss
fitted by SGD: on CIC's 10,000 texts and 118 labels that takes ~40 s for 5 folds on 2 cores, where lbfgs
logistic regression took ~570 s for the same out-of-fold accuracy (0.47 against 0.47).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from modeling.engine.selection.active import BLAS_THREADS
from modeling.engine.selection.quality import out_of_fold_probs

N_FOLDS = 5
MIN_PER_LABEL = 2  # fewer items per label on average and out-of-fold estimates say nothing


@dataclass(frozen=True)
class NoiseFlags:
    flagged: np.ndarray  # bool per train item
    signal: str  # "features" | "tfidf"
    skipped: str = ""  # why nothing was checked, when nothing was

    def per_label(self, labels: Sequence[str]) -> dict[str, int]:
        counts = Counter(label for label, flag in zip(labels, self.flagged, strict=True) if flag)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def tfidf_out_of_fold_probs(texts: Sequence[str], y: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray:
    model = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2, dtype=np.float32),
        SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=30, tol=None, random_state=seed),
    )
    folds = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Labels rarer than the fold count only warn; their held-out items still get probabilities.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        probs = cross_val_predict(model, list(texts), y, cv=folds, method="predict_proba")
    out = np.zeros((len(y), n_classes), dtype=np.float64)
    out[:, : probs.shape[1]] = probs
    return out


def flag_label_issues(
    texts: Sequence[str], labels: Sequence[str], seed: int = 0, features: np.ndarray | None = None
) -> NoiseFlags:
    """Items whose given label confident learning (prune by noise rate) thinks is wrong."""
    keys = sorted(set(labels))
    index = {key: i for i, key in enumerate(keys)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    signal = "features" if features is not None else "tfidf"
    if len(keys) < 2 or len(y) < max(2 * N_FOLDS, MIN_PER_LABEL * len(keys)):
        return NoiseFlags(np.zeros(len(y), dtype=bool), signal, f"{len(y)} items for {len(keys)} labels")
    if features is not None:
        probs = out_of_fold_probs(features, y, len(keys), n_folds=N_FOLDS, seed=seed)
    else:
        with threadpool_limits(BLAS_THREADS):
            probs = tfidf_out_of_fold_probs(texts, y, len(keys), seed)
    # cleanlab wants every class column to sum above zero; a class never predicted gets a tiny floor.
    probs = np.clip(probs, 1e-8, None)
    probs /= probs.sum(axis=1, keepdims=True)
    flagged = np.zeros(len(y), dtype=bool)
    flagged[find_label_issues(y, probs, return_indices_ranked_by="self_confidence", n_jobs=1)] = True
    return NoiseFlags(flagged, signal)
