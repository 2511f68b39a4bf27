"""prepare_training_set: taxonomy texts, doubtful labels found and dropped / down-weighted, augmentation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import ValidationError

from modeling.engine.data import TRAIN_FEATURES, TrainingDataParams, prepare_training_set
from modeling.engine.data.augment import augmented_copies
from modeling.engine.data.noise import flag_label_issues
from modeling.engine.evaluation.robustness import PERTURBATIONS
from modeling.engine.routes.base import Examples, FitContext, LabelInfo, Taxonomy

KEYS = ["支付", "物流", "售后", "其他"]
TAXONOMY = Taxonomy(
    (
        LabelInfo(
            "支付",
            name="支付问题",
            definition="付款、扣款和支付方式",
            rules=("提到扣款失败算支付",),
            examples=("付款一直失败", "怎么用花呗付款"),
            edge_cases=("退款到账慢 → 售后", "余额和积分一起用"),
        ),
        LabelInfo("物流", name="物流", definition="快递和配送", examples=("快递到哪了",)),
        LabelInfo("售后", name="售后"),
        LabelInfo("其他", name="其他"),
        LabelInfo("旧标签", name="旧标签", definition="不再使用的标签"),
    ),
    fallback_key="其他",
)
# Per-class character pools; every text also draws from the shared pool, so no single character decides.
POOLS = {"支付": "付款钱卡扣账", "物流": "快递运送件货", "售后": "退换修保损坏", "其他": "天气你好谢聊"}
SHARED = "的了我是在有这个吗呢"


def ctx(seed: int = 0, **extras) -> FitContext:
    return FitContext(label_keys=KEYS, taxonomy=TAXONOMY, seed=seed, extras=extras)


def synthetic_noisy_set(n_per_label: int = 60, flip_share: float = 0.1, seed: int = 0):
    """Texts drawn from their class's pool; flip_share of them then get another label on purpose."""
    rng = random.Random(seed)
    texts, labels = [], []
    for key, pool in POOLS.items():
        for _ in range(n_per_label):
            chars = [rng.choice(pool) if rng.random() < 0.7 else rng.choice(SHARED) for _ in range(rng.randint(6, 10))]
            texts.append("".join(chars))
            labels.append(key)
    flipped = rng.sample(range(len(texts)), int(flip_share * len(texts)))
    noisy = list(labels)
    for i in flipped:
        noisy[i] = rng.choice([k for k in KEYS if k != labels[i]])
    return texts, noisy, np.array(sorted(flipped))


def test_definitions_add_each_labels_texts_and_stated_edge_cases_only():
    train = Examples(["付款失败", "快递没到"], ["支付", "物流"])
    prepared, report = prepare_training_set(train, ctx(), TrainingDataParams(label_definitions=True))
    added = list(zip(prepared.texts[2:], prepared.labels[2:], strict=True))
    assert prepared.texts[:2] == train.texts and prepared.labels[:2] == train.labels
    assert added == [
        ("支付问题", "支付"),
        ("付款、扣款和支付方式", "支付"),
        ("提到扣款失败算支付", "支付"),
        ("付款一直失败", "支付"),
        ("怎么用花呗付款", "支付"),
        ("退款到账慢", "售后"),  # the edge case states its label; the one that states none is left out
        ("物流", "物流"),
        ("快递和配送", "物流"),
        ("快递到哪了", "物流"),
        ("售后", "售后"),
        ("其他", "其他"),
    ]
    assert prepared.weights is None
    assert report["label_definitions"]["added"] == 11
    assert report["label_definitions"]["by_source"] == {"name": 4, "definition": 2, "rule": 1, "example": 3} | {
        "edge_case": 1
    }


def test_definition_weight_is_carried_in_the_weights():
    train = Examples(["付款失败"], ["支付"])
    params = TrainingDataParams(label_definitions=True, definition_weight=2.5)
    prepared, _ = prepare_training_set(train, ctx(), params)
    assert prepared.weights is not None
    assert prepared.weights[0] == 1.0 and np.all(prepared.weights[1:] == 2.5)


def test_defaults_leave_the_train_set_as_given():
    train = Examples(["付款失败", "快递没到"], ["支付", "物流"])
    prepared, report = prepare_training_set(train, ctx(), TrainingDataParams())
    assert (prepared.texts, prepared.labels, prepared.weights) == (train.texts, train.labels, None)
    assert report == {"n_given": 2, "n_train": 2}


def _precision_recall(flagged: np.ndarray, planted: np.ndarray) -> tuple[float, float]:
    hits = len(set(np.flatnonzero(flagged)) & set(planted))
    return hits / max(int(flagged.sum()), 1), hits / len(planted)


def test_out_of_fold_confident_learning_finds_planted_flips_from_text():
    texts, labels, planted = synthetic_noisy_set()
    flags = flag_label_issues(texts, labels, seed=0)
    precision, recall = _precision_recall(flags.flagged, planted)
    assert flags.signal == "tfidf"
    assert recall >= 0.8 and precision >= 0.7, (precision, recall)


def test_out_of_fold_confident_learning_finds_planted_flips_from_features():
    texts, labels, planted = synthetic_noisy_set()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(KEYS), 16)) * 3
    true = [KEYS.index(label) for label in synthetic_noisy_set(flip_share=0.0)[1]]
    features = (centres[true] + rng.normal(size=(len(texts), 16))).astype(np.float32)
    flags = flag_label_issues(texts, labels, seed=0, features=features)
    precision, recall = _precision_recall(flags.flagged, planted)
    assert flags.signal == "features"
    assert recall >= 0.8 and precision >= 0.7, (precision, recall)


def test_drop_removes_the_flagged_items_and_reports_them_per_label():
    texts, labels, planted = synthetic_noisy_set()
    prepared, report = prepare_training_set(Examples(texts, labels), ctx(), TrainingDataParams(noisy_labels="drop"))
    info = report["noisy_labels"]
    assert info["action"] == "drop" and info["signal"] == "tfidf"
    assert len(prepared) == len(texts) - info["flagged"] and sum(info["flagged_per_label"].values()) == info["flagged"]
    kept = {(t, lab) for t, lab in zip(prepared.texts, prepared.labels, strict=True)}
    still_flipped = sum((texts[i], labels[i]) in kept for i in planted)
    assert still_flipped <= 0.2 * len(planted)
    assert prepared.weights is None


def test_downweight_keeps_every_item_and_weighs_the_flagged_ones_down():
    texts, labels, planted = synthetic_noisy_set()
    params = TrainingDataParams(noisy_labels="downweight", noisy_weight=0.25)
    prepared, report = prepare_training_set(Examples(texts, labels), ctx(), params)
    assert prepared.texts == texts and prepared.labels == labels
    low = np.flatnonzero(prepared.weights == 0.25)
    assert len(low) == report["noisy_labels"]["flagged"]
    assert np.all(np.delete(prepared.weights, low) == 1.0)
    assert len(set(low) & set(planted)) >= 0.8 * len(planted)


def test_flagging_uses_train_features_from_the_context():
    texts, labels, _ = synthetic_noisy_set()
    features = np.random.default_rng(1).normal(size=(len(texts), 8)).astype(np.float32)
    _, report = prepare_training_set(
        Examples(texts, labels), ctx(**{TRAIN_FEATURES: features}), TrainingDataParams(noisy_labels="drop")
    )
    assert report["noisy_labels"]["signal"] == "features"


def test_too_few_items_are_not_checked_and_say_why():
    prepared, report = prepare_training_set(
        Examples(["付款失败", "快递没到"], ["支付", "物流"]), ctx(), TrainingDataParams(noisy_labels="drop")
    )
    assert len(prepared) == 2 and report["noisy_labels"]["flagged"] == 0
    assert "2 items for 2 labels" in report["noisy_labels"]["skipped"]


def test_augment_adds_perturbed_copies_that_keep_their_labels_and_weights():
    texts, labels, _ = synthetic_noisy_set(n_per_label=20, flip_share=0.0)
    weights = np.linspace(0.5, 1.0, len(texts))
    prepared, report = prepare_training_set(
        Examples(texts, labels, weights), ctx(seed=4), TrainingDataParams(augment=0.5)
    )
    copies = augmented_copies(texts, labels, 0.5, seed=4)
    assert copies == augmented_copies(texts, labels, 0.5, seed=4)
    assert copies != augmented_copies(texts, labels, 0.5, seed=5)
    assert len(copies) == report["augment"]["added"] == len(prepared) - len(texts) >= 0.45 * len(texts)
    assert report["augment"]["by_perturbation"].keys() == set(PERTURBATIONS)
    assert min(report["augment"]["by_perturbation"].values()) >= 0.2 * len(copies)
    for j, copy in enumerate(copies, start=len(texts)):
        assert prepared.texts[j] == copy.text != texts[copy.source]
        assert prepared.labels[j] == labels[copy.source] and prepared.weights[j] == pytest.approx(weights[copy.source])


def test_augment_above_one_copies_items_more_than_once_with_different_perturbations():
    texts, labels, _ = synthetic_noisy_set(n_per_label=5, flip_share=0.0)
    copies = augmented_copies(texts, labels, 2.0, seed=0)
    per_source: dict[int, list[str]] = {}
    for copy in copies:
        per_source.setdefault(copy.source, []).append(copy.text)
    assert max(len(v) for v in per_source.values()) == 2
    assert all(len(set(v)) == len(v) for v in per_source.values())


@pytest.mark.parametrize(
    ("values", "key"), [({"augment": 2.5}, "augment"), ({"noisy_labels": "fix"}, "noisy_labels"), ({"nosy": 1}, "nosy")]
)
def test_bad_parameters_name_the_key(values, key):
    with pytest.raises(ValidationError, match=key):
        TrainingDataParams(**values)
