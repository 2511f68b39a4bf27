"""Label-quality ranking and near-duplicate conflicts on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.engine.selection import quality


def _blobs(seed: int = 0, n: int = 600, n_classes: int = 6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 16)) * 4
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(size=(n, 16)), y


def test_injected_flips_are_ranked_first():
    x, y = _blobs()
    noisy, flipped = quality.flip_labels(y, 6, 0.1, seed=0)
    assert len(flipped) == 60 and (noisy[flipped] != y[flipped]).all()
    assert (noisy[np.setdiff1d(np.arange(600), flipped)] == y[np.setdiff1d(np.arange(600), flipped)]).all()
    probs = quality.out_of_fold_probs(x, noisy, 6, n_folds=5, seed=0)
    ranked = quality.rank_label_issues(noisy, probs)
    order = [issue.index for issue in ranked]
    assert sorted(order) == list(range(600))  # every item ranked exactly once
    assert quality.precision_at_k(order, set(flipped.tolist()), 60) >= 0.9
    top = ranked[0]
    assert top.flagged and top.suggested == y[top.index] and top.given != top.suggested


def test_out_of_fold_handles_rare_classes_and_refuses_tiny_sets():
    x, y = _blobs(n=60)
    y[0] = 5
    y[y == 5] = 4
    y[0] = 5  # class 5 has a single member
    probs = quality.out_of_fold_probs(x, y, 6, n_folds=3)
    assert probs.shape == (60, 6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="at least 10"):
        quality.out_of_fold_probs(x[:5], y[:5], 6)


def test_near_duplicates_with_different_labels_are_conflicts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 32))
    x[10] = x[3] + 0.001  # near duplicate, different label -> conflict
    x[20] = x[4] + 0.001  # near duplicate, same label -> fine
    y = np.arange(50) % 7
    y[10] = (y[3] + 1) % 7
    y[20] = y[4]
    conflicts = quality.near_duplicate_conflicts(x, y, block=16)
    assert [(c.a, c.b) for c in conflicts] == [(3, 10)]
    assert conflicts[0].similarity >= 0.97
