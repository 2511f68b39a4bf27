"""The cascade's combine rules, its share cap and run_cascade on real (tiny) predictors, without Django."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling.engine.cascade import (
    COMBINE_RULES,
    ShareCap,
    align,
    combine,
    compatible,
    more_confident,
    product,
    recheck_only,
    run_cascade,
)
from modeling.engine.evaluation.calibration import BELOW_THRESHOLD, RECHECK_DISAGREED
from modeling.engine.routes.base import Examples, FitContext, Taxonomy
from modeling.engine.versions import train_version
from tests.engine.test_versions import FALLBACK, KEYS, split
from tests.engine.vector_route import fit

torch.set_num_threads(1)

P = np.array([[0.5, 0.3, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
Q = np.array([[0.6, 0.1, 0.2, 0.1], [0.1, 0.7, 0.1, 0.1]])


def test_product_is_the_renormalised_product():
    joint = product(P, Q)
    np.testing.assert_allclose(joint.sum(axis=1), 1.0)
    expected = P * Q / (P * Q).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(joint, expected, atol=1e-5)
    assert joint[0, 0] > max(P[0, 0], Q[0, 0])  # two models that agree are more sure together
    assert joint[1].argmax() == 1  # a flat primary leaves the decision to the re-check


def test_product_keeps_the_primary_ranking_on_labels_the_recheck_lacks():
    primary = np.array([[0.4, 0.35, 0.25]])
    recheck = np.array([[0.0, 0.0, 1.0]])
    joint = product(primary, recheck)
    assert joint[0, 0] > joint[0, 1] > 0.0 and joint[0].argmax() == 2


def test_recheck_only_and_more_confident():
    np.testing.assert_array_equal(recheck_only(P, Q), Q)
    picked = more_confident(P, Q)
    np.testing.assert_array_equal(picked[0], Q[0])  # 0.6 > 0.5
    np.testing.assert_array_equal(picked[1], Q[1])  # 0.7 > 0.25
    np.testing.assert_array_equal(more_confident(Q, P)[0], Q[0])


def test_combine_refuses_unknown_rules_and_mismatched_shapes():
    with pytest.raises(ValueError, match="unknown combine rule 'vote'"):
        combine("vote", P, Q)
    with pytest.raises(ValueError, match="differ in shape"):
        combine("product", P, Q[:, :3])
    assert set(COMBINE_RULES) == {"product", "recheck_only", "more_confident"}


def test_align_reorders_columns_and_fills_missing_labels_with_zero():
    probs = np.array([[0.7, 0.3]])
    np.testing.assert_array_equal(align(probs, ["b", "a"], ["a", "b", "c"]), [[0.3, 0.7, 0.0]])
    assert compatible(["a", "b", "c"], ["b", "a"]) == []
    assert compatible(["a", "b"], ["a", "z"]) == ["z"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cap_holds_the_share_over_the_window():
    clock = Clock()
    cap = ShareCap(0.25, 60.0, clock)
    admitted = cap.admit([True] * 8)
    assert sum(admitted) == 2 and admitted[0]
    assert cap.admit([False] * 8) == [False] * 8
    # 16 texts seen, 2 re-checked: the next four may bring it to 5 of 20, not beyond
    assert cap.admit([True] * 4) == [True, True, False, True]
    assert cap.share() == pytest.approx(0.25)


def test_cap_forgets_texts_older_than_the_window():
    clock = Clock()
    cap = ShareCap(0.1, 10.0, clock)
    assert cap.admit([True, True]) == [True, False]
    assert cap.admit([True]) == [False]
    clock.now = 10.5
    assert cap.admit([True]) == [True]  # the window slid past the first re-check
    assert cap.share() == 1.0


def test_cap_zero_never_rechecks_and_one_always_does():
    assert ShareCap(0.0, 60.0).admit([True] * 3) == [False] * 3
    assert ShareCap(1.0, 60.0).admit([True, False, True]) == [True, False, True]
    with pytest.raises(ValueError):
        ShareCap(1.5, 60.0)
    with pytest.raises(ValueError):
        ShareCap(0.5, 0.0)


@pytest.fixture(scope="module")
def pair():
    """Two versions of the vectors route: the primary sees noisier training data than the re-check."""
    options = {"head_kind": "linear", "abstain_target": 0.8, "coverage_floor": 0.05}
    primary = fit(*split(300, 1, spread=2.5), *split(200, 2, spread=2.5), options, KEYS, FALLBACK)
    recheck = fit(*split(300, 4, spread=1.5), *split(200, 5, spread=1.5), options, KEYS, FALLBACK)
    return primary.predictor(), recheck.predictor()


def test_texts_above_tau_keep_the_primary_answer(pair):
    primary, recheck = pair
    texts, _ = split(60, 3, spread=2.5)
    alone = primary.predict(texts)
    result = run_cascade(primary, recheck, texts, tau=0.7)
    top = np.array([p.top_confidence for p in alone])
    assert result.wanted == (top < 0.7).tolist() and any(result.wanted) and not all(result.wanted)
    for p, first, again, checked in zip(alone, result.primary, result.predictions, result.rechecked, strict=True):
        assert (first.label, first.confidence) == (p.top_label, p.top_confidence)
        if not checked:
            assert again == p
    assert result.recheck_seconds > 0.0 and result.primary_seconds > 0.0


def test_rechecked_texts_answer_from_the_combined_distribution(pair):
    primary, recheck = pair
    texts, _ = split(60, 3, spread=2.5)
    scored, second = primary.score(texts).probs, recheck.score(texts).probs
    result = run_cascade(primary, recheck, texts, tau=1.01, rule="product")
    joint = product(scored, second)
    for i, p in enumerate(result.predictions):
        assert result.recheck[i].label == KEYS[int(second[i].argmax())]
        assert p.top_label == KEYS[int(joint[i].argmax())]
        assert p.top_confidence == pytest.approx(joint[i].max(), abs=1e-6)
        still_unsure = joint[i].max() < primary.choice.threshold
        assert p.abstained == still_unsure
        assert p.label == (FALLBACK if still_unsure else p.top_label)
        if p.abstained:
            expected = RECHECK_DISAGREED if result.recheck[i].label != result.primary[i].label else BELOW_THRESHOLD
            assert p.abstain_reason == expected
    assert any(a.label != b.top_label for a, b in zip(result.primary, result.predictions, strict=True))


def test_admit_decides_which_texts_are_rechecked(pair):
    primary, recheck = pair
    texts, _ = split(20, 3, spread=2.5)
    seen: list[list[bool]] = []

    def first_only(wanted: list[bool]) -> list[bool]:
        seen.append(list(wanted))
        return [i == 0 for i in range(len(wanted))]

    result = run_cascade(primary, recheck, texts, tau=1.01, admit=first_only)
    assert seen == [[True] * 20] and result.rechecked == [True] + [False] * 19


def test_a_tiny_decoder_rechecks_a_tfidf_primary(tiny_decoder):
    """The pairing the product serves: a frozen-feature primary and a LoRA decoder re-check."""
    keys = ["退款", "物流快递", "其他"]
    texts = ["我要退款", "退款多久到账", "快递到哪里了", "包裹物流太慢", "你好", "今天天气"] * 4
    labels = ["退款", "退款", "物流快递", "物流快递", "其他", "其他"] * 4
    data = Examples(texts, labels)
    ctx = FitContext(list(keys), Taxonomy.from_keys(keys, "其他"))
    primary = train_version("tfidf", {}, data, data, ctx).predictor()
    lora = {"backbone": tiny_decoder.path, "dtype": "fp32", "batch_size": 8, "epochs": 1.0}
    recheck = train_version("lora", lora, data, data, ctx).predictor()
    result = run_cascade(primary, recheck, ["退款到账了吗", "物流"], tau=1.01)
    assert result.rechecked == [True, True]
    assert all(answer.label in keys and 0.0 < answer.confidence <= 1.0 for answer in result.recheck)
    assert all(p.top_label in keys for p in result.predictions)
