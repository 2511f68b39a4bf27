"""Query strategies, diversity, cold start and stopping on synthetic features (no model weights)."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.engine.selection import active


def test_uncertainty_scores_rank_the_expected_rows():
    probs = np.array(
        [
            [0.98, 0.01, 0.01],  # confident
            [0.36, 0.32, 0.32],  # flat: highest entropy, least confident
            [0.50, 0.495, 0.005],  # near tie of two classes: smallest margin
            [0.70, 0.20, 0.10],
        ]
    )
    assert np.argmax(active.least_confidence(probs)) == 1
    assert np.argmax(active.entropy(probs)) == 1
    assert np.argmax(active.margin(probs)) == 2
    assert np.argmin(active.margin(probs)) == 0
    assert list(active.select_batch("margin", 2, probs=probs)) == [2, 1]
    assert list(active.select_batch("least_confidence", 1, probs=probs)) == [1]
    assert list(active.select_batch("entropy", 2, probs=probs)) == [1, 3]


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="matrix"):
        active.margin(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="cold_start"):
        active.select_batch("margin", 2, features=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unknown strategy"):
        active.simulate("magic", np.zeros((4, 2)), np.zeros(4), np.zeros((2, 2)), np.zeros(2), 2, np.arange(2), 1, 1)


def test_random_is_seeded_and_covers_distinct_rows():
    feats = np.random.default_rng(0).normal(size=(50, 4))
    a = active.select_batch("random", 10, features=feats, seed=3)
    b = active.select_batch("random", 10, features=feats, seed=3)
    assert list(a) == list(b) and len(set(a)) == 10


def _near_duplicate_pool(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five tight groups of 20 near-duplicates each; every point is equally uncertain-ish, but one group
    is slightly more uncertain than the rest (uncertainty alone would take a whole batch from it)."""
    centres = np.eye(5, 8) * 10
    feats = np.concatenate([c + rng.normal(scale=0.01, size=(20, 8)) for c in centres])
    group = np.repeat(np.arange(5), 20)
    margin_gap = np.where(group == 0, 0.01, 0.2) + rng.uniform(0, 0.001, size=100)
    top = 0.5 + margin_gap / 2
    probs = np.stack([top, 1 - top], axis=1)
    return feats, probs


def test_margin_diverse_spreads_a_batch_over_groups_where_margin_takes_one_group():
    feats, probs = _near_duplicate_pool(np.random.default_rng(1))
    group = np.repeat(np.arange(5), 20)
    plain = active.select_batch("margin", 5, probs=probs, features=feats)
    diverse = active.select_batch("margin_diverse", 5, probs=probs, features=feats, candidate_factor=20)
    assert set(group[plain]) == {0}
    assert set(group[diverse]) == {0, 1, 2, 3, 4}
    kcenter = active.select_batch(
        "margin_diverse", 5, probs=probs, features=feats, candidate_factor=20, diversity="kcenter"
    )
    assert set(group[kcenter]) == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="diversity"):
        active.select_batch("margin_diverse", 5, probs=probs, features=feats, diversity="magic")


def test_margin_diverse_stays_within_the_uncertain_candidates():
    feats, probs = _near_duplicate_pool(np.random.default_rng(2))
    diverse = active.select_batch("margin_diverse", 3, probs=probs, features=feats, candidate_factor=10)
    top30 = set(np.argsort(-active.margin(probs))[:30])
    assert set(diverse) <= top30


def test_margin_diverse_skips_a_clusters_stray_edge_point_even_when_it_is_the_most_uncertain():
    rng = np.random.default_rng(0)
    group_a = np.eye(3)[0] + rng.normal(scale=0.01, size=(20, 3))
    group_b = np.eye(3)[1] + rng.normal(scale=0.01, size=(20, 3))
    stray = np.array([[1.0, 0.0, 0.5]])  # joins group a's cluster, but far from its centre
    feats = np.concatenate([group_a, group_b, stray])
    gap = np.concatenate([rng.uniform(0.10, 0.30, size=40), [0.0]])  # the stray is the nearest tie of all
    probs = np.stack([0.5 + gap / 2, 0.5 - gap / 2], axis=1)
    batch = active.select_batch("margin_diverse", 2, probs=probs, features=feats, candidate_factor=50)
    assert 40 not in batch
    assert sorted(int(i) // 20 for i in batch) == [0, 1]  # still one pick from each group
    assert active.select_batch("margin", 1, probs=probs)[0] == 40


def test_rare_pair_weight_follows_the_rarer_of_the_two_top_classes():
    probs = np.array([[0.5, 0.4, 0.1], [0.1, 0.45, 0.45], [0.1, 0.3, 0.6]])
    counts = np.array([0, 3, 8])
    # row 0: classes 0 (no labels) and 1 -> 1/sqrt(1); rows 1 and 2: classes 1 and 2 -> class 1's 3 labels decide.
    assert np.allclose(active.rare_pair_weight(probs, counts), [1.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="one count per class"):
        active.rare_pair_weight(probs, np.array([1, 2]))


def _one_cluster_two_kinds_of_tie(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One tight cluster: even rows are a near tie of classes 0 and 1 (gap 0.02), odd rows a looser tie of
    classes 0 and 2 (gap 0.2)."""
    feats = np.array([1.0, 0.0, 0.0]) + rng.normal(scale=0.001, size=(40, 3))
    probs = np.zeros((40, 3))
    probs[0::2] = [0.49, 0.47, 0.04]
    probs[1::2] = [0.55, 0.05, 0.35]
    return feats, probs


def test_margin_diverse_prefers_a_near_tie_that_involves_a_rarely_labelled_class():
    feats, probs = _one_cluster_two_kinds_of_tie(np.random.default_rng(0))
    by_margin = active.select_batch("margin_diverse", 1, probs=probs, features=feats, candidate_factor=40)
    assert by_margin[0] % 2 == 0  # no counts (or equal counts): the nearest tie wins
    equal = active.select_batch(
        "margin_diverse", 1, probs=probs, features=feats, candidate_factor=40, labelled_counts=np.array([9, 9, 9])
    )
    assert list(equal) == list(by_margin)
    # Classes 0 and 1 have many labels, class 2 one: the 0-vs-2 tie teaches more per label.
    rare = active.select_batch(
        "margin_diverse", 1, probs=probs, features=feats, candidate_factor=40, labelled_counts=np.array([50, 50, 1])
    )
    assert rare[0] % 2 == 1
    # The weight steers only the pick among the top-margin candidates, never brings in other rows.
    top10 = active.select_batch(
        "margin_diverse", 1, probs=probs, features=feats, candidate_factor=10, labelled_counts=np.array([50, 50, 1])
    )
    assert top10[0] % 2 == 0


def test_k_center_greedy_avoids_the_labelled_region():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0]) + rng.normal(scale=0.01, size=(10, 2))
    b = np.array([0.0, 1.0]) + rng.normal(scale=0.01, size=(10, 2))
    pool = np.concatenate([a, b])
    pick = active.k_center_greedy(pool, 1, anchors=a[:3])
    assert pick[0] >= 10  # the first pick comes from the region without labels


def test_zero_shot_cold_start_takes_each_label_s_clearest_texts_in_turn():
    # 3 labels; label 2 is never predicted. Label 1's best text (0.9) is clearer than label 0's best (0.8).
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.9, 0.0], [0.3, 0.5, 0.2], [0.5, 0.4, 0.1]]
    )
    assert active.zero_shot_cold_start(probs, 2).tolist() == [3, 0]
    assert active.zero_shot_cold_start(probs, 4).tolist() == [3, 0, 4, 1]
    assert active.zero_shot_cold_start(probs, 10).tolist() == [3, 0, 4, 1, 2, 5]
    rest = active.priority_scores("zero_shot", np.array([3, 0]), len(probs), probs)
    assert rest[3] > rest[0] > 1.0 >= rest.max(initial=0, where=rest <= 1.0)
    assert rest[1] > rest[4]  # after the batch: the more confident first (0.7 against 0.5)


def test_cold_start_covers_every_cluster_in_proportion():
    rng = np.random.default_rng(0)
    sizes = [200, 100, 50, 25, 25]
    centres = rng.normal(size=(5, 16)) * 10
    feats = np.concatenate([c + rng.normal(size=(s, 16)) for c, s in zip(centres, sizes, strict=True)])
    cluster = np.repeat(np.arange(5), sizes)
    picked = active.cold_start(feats, 40, n_clusters=5, seed=0)
    assert len(picked) == 40 and len(set(picked)) == 40
    counts = np.bincount(cluster[picked], minlength=5)
    assert (counts >= 1).all()
    assert counts[0] == 20 and counts[1] == 10  # proportional to 200 / 400 and 100 / 400


def test_priority_scores_put_the_batch_first_in_order():
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.8, 0.2]])
    batch = active.select_batch("margin", 2, probs=probs)
    scores = active.priority_scores("margin", batch, 4, probs)
    assert list(np.argsort(-scores)[:2]) == list(batch)
    assert scores[batch].min() > 1.0 >= scores[np.setdiff1d(np.arange(4), batch)].max()


def test_stopping_signal_needs_three_stable_rounds():
    assert active.prediction_agreement(["a", "b", "c", "d"], ["a", "b", "c", "x"]) == 0.75
    assert not active.should_stop([0.995, 0.999])
    assert not active.should_stop([0.995, 0.98, 0.999, 0.999])
    assert active.should_stop([0.9, 0.995, 0.999, 1.0])


def test_simulation_learns_and_uncertainty_beats_random_on_a_hard_boundary():
    rng = np.random.default_rng(0)
    # Ten classes; most of the pool is far from every boundary, so random labels add little.
    n_classes = 10
    centres = rng.normal(size=(n_classes, 12)) * 3
    y = rng.integers(0, n_classes, size=2000)
    x = centres[y] + rng.normal(size=(2000, 12)) * 1.6
    tx, ty = x[1500:], y[1500:]
    px, py = x[:1500], y[:1500]
    seed_idx = active.initial_seed_set(px, 30, seed=0)
    results = {s: active.simulate(s, px, py, tx, ty, n_classes, seed_idx, 30, 4, seed=0) for s in ("random", "margin")}
    for res in results.values():
        assert [p.labels for p in res.curve] == [30, 60, 90, 120, 150]
        assert res.curve[-1].macro_f1 > res.curve[0].macro_f1
    assert results["random"].labels_to_reach(2.0) is None
    assert results["margin"].labels_to_reach(0.0) == 30


def test_simulation_gives_margin_diverse_the_label_counts_so_far(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = rng.integers(0, 3, size=300)
    seen = []
    select = active.select_batch

    def spy(strategy, batch_size, **kwargs):
        seen.append(kwargs["labelled_counts"].copy())
        return select(strategy, batch_size, **kwargs)

    monkeypatch.setattr(active, "select_batch", spy)
    seed_idx = active.initial_seed_set(x[:250], 20, seed=0)
    active.simulate("margin_diverse", x[:250], y[:250], x[250:], y[250:], 3, seed_idx, 10, 2, seed=0)
    assert [int(c.sum()) for c in seen] == [20, 30]
    assert list(seen[0]) == list(np.bincount(y[seed_idx], minlength=3))
