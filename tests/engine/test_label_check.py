"""The label check's out-of-fold scoring goes through the route seam: fit on the other folds, encode the held one."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.engine.routes import get_route
from modeling.engine.routes.base import Examples, FitContext, Taxonomy
from modeling.engine.selection import quality
from tests.engine.vector_route import LABEL_CHECK, texts_for

KEYS = ["a", "b", "c"]


def _examples(n_per_class: int = 12, seed: int = 0) -> tuple[Examples, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(KEYS)), n_per_class)
    x = np.hstack([np.eye(len(KEYS))[y] * 3, rng.normal(size=(len(y), 8))]).astype(np.float32)
    return Examples(texts_for(x), [KEYS[i] for i in y]), x


def _ctx() -> FitContext:
    return FitContext(label_keys=KEYS, taxonomy=Taxonomy.from_keys(KEYS, "c"), seed=0)


def test_every_row_is_scored_by_a_fit_that_never_saw_it(monkeypatch):
    examples, x = _examples()
    route = get_route(LABEL_CHECK["route"])
    seen: list[tuple[set[str], set[str]]] = []
    fit = route.fit

    def recording_fit(train, val, params, ctx):
        seen.append((set(train.texts), set(val.texts)))
        return fit(train, val, params, ctx)

    monkeypatch.setattr(route, "fit", recording_fit)
    scored = quality.out_of_fold(examples, _ctx(), LABEL_CHECK["route"], LABEL_CHECK["params"], n_folds=3)
    assert len(seen) == 3
    assert all(not (train & held) for train, held in seen)
    assert set().union(*(held for _, held in seen)) == set(examples.texts)
    np.testing.assert_allclose(scored.probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(scored.features, x)  # the route's own embedding, in input order


def test_a_flipped_label_gets_a_low_out_of_fold_probability():
    examples, _ = _examples()
    labels = list(examples.labels)
    labels[5] = "b"  # a text of class a, labelled b
    scored = quality.out_of_fold(
        Examples(examples.texts, labels), _ctx(), LABEL_CHECK["route"], LABEL_CHECK["params"], n_folds=3
    )
    assert scored.probs[5].argmax() == KEYS.index("a")
    assert scored.probs[5, KEYS.index("b")] < 0.2
    issues = quality.rank_label_issues(np.array([KEYS.index(k) for k in labels]), scored.probs)
    assert issues[0].index == 5 and issues[0].flagged


def test_too_few_items_and_unknown_labels_are_clear_errors():
    examples, _ = _examples(n_per_class=2)
    with pytest.raises(ValueError, match="at least 10 labelled items"):
        quality.out_of_fold(examples, _ctx(), LABEL_CHECK["route"], LABEL_CHECK["params"], n_folds=5)
    with pytest.raises(ValueError, match="unknown label keys z"):
        quality.out_of_fold(Examples(examples.texts, ["z"] * len(examples)), _ctx(), LABEL_CHECK["route"])
