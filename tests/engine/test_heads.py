"""Heads on synthetic data: Gaussian-blob features and short texts whose class sits in a keyword."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from modeling.engine.routes.heads import Cancelled, HeadConfig, HeadInputs, class_weights, load_head, train_head
from modeling.engine.routes.text_features import TextVectorizer

torch.set_num_threads(1)

N_CLASSES = 4
KEYWORDS = ["退款", "运费", "密码", "机票"]
FILLER = list("的了是我你他好吗在有这个那么就也都很")


def blobs(n: int, seed: int, spread: float = 1.0, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    centers = np.random.default_rng(123).normal(0, 1.5, (N_CLASSES, dim))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    return (centers[y] + rng.normal(0, spread, (n, dim))).astype(np.float32), y


def keyword_texts(y: np.ndarray, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(FILLER, 5)) + KEYWORDS[c] + "".join(rng.choice(FILLER, 3)) for c in y]


def blob_split(n: int, seed: int) -> tuple[HeadInputs, np.ndarray]:
    x, y = blobs(n, seed)
    return HeadInputs(x, keyword_texts(y, seed)), y


def accuracy(head, inputs: HeadInputs, y: np.ndarray) -> float:
    return float((head.logits(inputs).argmax(axis=1) == y).mean())


@pytest.mark.parametrize("kind", ["linear", "mlp", "sklearn_lr", "tfidf", "hybrid"])
def test_every_kind_learns_and_survives_save_load(kind, tmp_path):
    train, ytr = blob_split(240, 1)
    val, yva = blob_split(80, 2)
    head = train_head(train, ytr, val, yva, N_CLASSES, HeadConfig(kind=kind), seed=0)
    assert accuracy(head, val, yva) > 0.85
    head.save(tmp_path / "head")
    loaded = load_head(tmp_path / "head")
    np.testing.assert_array_equal(loaded.logits(val), head.logits(val))
    assert not list((tmp_path / "head").rglob("*.pkl"))


@pytest.mark.parametrize("kind", ["linear", "mlp", "hybrid"])
def test_same_seed_gives_identical_weights(kind):
    train, ytr = blob_split(200, 3)
    val, yva = blob_split(60, 4)
    config = HeadConfig(kind=kind, feature_kind="mlp", max_epochs=8)
    first = train_head(train, ytr, val, yva, N_CLASSES, config, seed=7)
    second = train_head(train, ytr, val, yva, N_CLASSES, config, seed=7)
    for a, b in zip(first.parts[0].layers, second.parts[0].layers, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(first.logits(val), second.logits(val))
    other = train_head(train, ytr, val, yva, N_CLASSES, config, seed=8)
    assert not np.array_equal(other.parts[0].layers[0][0], first.parts[0].layers[0][0])


def test_training_leaves_global_torch_rng_alone():
    train, ytr = blob_split(100, 5)
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    train_head(train, ytr, train, ytr, N_CLASSES, HeadConfig(kind="mlp", max_epochs=3), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_early_stopping_stops_after_patience_without_f1_gain():
    # Labels are pure noise: validation macro-F1 cannot keep improving, so training must stop early.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 12)).astype(np.float32), rng.integers(0, N_CLASSES, 300)
    xv, yv = rng.normal(size=(100, 12)).astype(np.float32), rng.integers(0, N_CLASSES, 100)
    config = HeadConfig(kind="linear", max_epochs=200, patience=3)
    head = train_head(HeadInputs(x), y, HeadInputs(xv), yv, N_CLASSES, config)
    epochs = len(head.history)
    assert epochs < 200
    f1s = [h["val_macro_f1"] for h in head.history]
    # The last 3 epochs brought no gain over the best F1 seen before them, and the kept weights are the best.
    assert max(f1s[-3:]) <= max(f1s[:-3])
    assert head.history[head.best_epoch - 1]["val_macro_f1"] == max(f1s)


@pytest.mark.parametrize("loss", ["weighted", "focal", "none"])
def test_losses_all_train(loss):
    train, ytr = blob_split(240, 6)
    val, yva = blob_split(80, 7)
    head = train_head(train, ytr, val, yva, N_CLASSES, HeadConfig(kind="linear", loss=loss))
    assert accuracy(head, val, yva) > 0.85


def test_class_weights_favour_rare_classes():
    y = np.array([0] * 90 + [1] * 10)
    weights = class_weights(y, 3)
    np.testing.assert_allclose(weights[:2], 1 / np.log(1.02 + np.array([0.9, 0.1])), rtol=1e-6)
    assert weights[1] > weights[0]


@pytest.mark.parametrize("mode", ["ensemble", "concat"])
def test_hybrid_beats_feature_only_when_signal_is_in_character_ngrams(mode):
    # Features carry a weak, noisy version of the class; the text carries a clean keyword.
    rng = np.random.default_rng(0)
    ytr, yva = rng.integers(0, N_CLASSES, 300), rng.integers(0, N_CLASSES, 150)
    centers = np.random.default_rng(123).normal(0, 1.5, (N_CLASSES, 12))
    xtr = (centers[ytr] + rng.normal(0, 4.0, (300, 12))).astype(np.float32)
    xva = (centers[yva] + rng.normal(0, 4.0, (150, 12))).astype(np.float32)
    train, val = HeadInputs(xtr, keyword_texts(ytr, 1)), HeadInputs(xva, keyword_texts(yva, 2))
    feature_only = train_head(train, ytr, val, yva, N_CLASSES, HeadConfig(kind="linear"))
    hybrid = train_head(train, ytr, val, yva, N_CLASSES, HeadConfig(kind="hybrid", hybrid_mode=mode))
    assert accuracy(feature_only, val, yva) < 0.8
    assert accuracy(hybrid, val, yva) > 0.95
    if mode == "ensemble":
        assert hybrid.alpha > 0


def test_should_stop_cancels_training():
    train, ytr = blob_split(100, 8)
    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        train_head(train, ytr, train, ytr, N_CLASSES, HeadConfig(kind="linear"), should_stop=stop_after_two)


def test_progress_is_reported_in_unit_range():
    train, ytr = blob_split(100, 9)
    seen: list[float] = []
    train_head(
        train, ytr, train, ytr, N_CLASSES, HeadConfig(kind="hybrid", max_epochs=5), progress=lambda f, m: seen.append(f)
    )
    assert seen and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)


def test_bad_inputs_give_clear_errors():
    train, ytr = blob_split(50, 11)
    with pytest.raises(ValueError, match="needs frozen features"):
        train_head(HeadInputs(None, train.texts), ytr, train, ytr, N_CLASSES, HeadConfig(kind="linear"))
    with pytest.raises(ValueError, match="raw texts"):
        train_head(HeadInputs(train.features), ytr, train, ytr, N_CLASSES, HeadConfig(kind="tfidf"))
    with pytest.raises(ValueError, match="class indices"):
        train_head(train, ytr + 10, train, ytr, N_CLASSES, HeadConfig(kind="linear"))
    with pytest.raises(ValueError, match="unknown head kind"):
        HeadConfig(kind="svm")
    head = train_head(train, ytr, train, ytr, N_CLASSES, HeadConfig(kind="sklearn_lr"))
    with pytest.raises(ValueError, match="does not match"):
        head.logits(HeadInputs(np.zeros((2, 5), dtype=np.float32)))


def test_classes_missing_from_training_are_never_predicted():
    train, ytr = blob_split(200, 12)
    keep = ytr != 3
    sub = train.subset(np.flatnonzero(keep))
    head = train_head(sub, ytr[keep], sub, ytr[keep], N_CLASSES, HeadConfig(kind="sklearn_lr"))
    assert head.logits(train).shape == (200, N_CLASSES)
    assert (head.logits(train).argmax(axis=1) != 3).all()


def test_tfidf_vectorizer_round_trip(tmp_path):
    texts = ["我要退款", "运费险怎么赔", "reset my password please", "机票改签"]
    vectorizer = TextVectorizer().fit(texts)
    vectorizer.save(tmp_path)
    loaded = TextVectorizer.load(tmp_path)
    probe = ["退款运费 退款", "password reset", "全新的句子", ""]
    assert (abs(loaded.transform(probe) - vectorizer.transform(probe))).max() < 1e-7
    # The fast transform gives scikit-learn's numbers.
    reference = sp.hstack([v.transform(probe) for v in vectorizer._vectorizers.values()], format="csr")
    assert abs(vectorizer.transform(probe) - reference).max() < 1e-6
    assert vectorizer.transform(probe).shape == (4, vectorizer.n_features)


@pytest.mark.parametrize("kind", ["linear", "tfidf"])
def test_a_zero_weight_row_does_not_teach_the_head(kind):
    # Two rows with contradicting labels for the same input: weight 0 on the second means only the first counts.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    texts = [("左" if label else "右") + str(i) for i, label in enumerate(y)]
    flipped = 1 - y
    both_x, both_y, both_texts = np.r_[x, x], np.r_[y, flipped], texts + texts
    weights = np.r_[np.ones(40), np.zeros(40)].astype(np.float32)
    config = HeadConfig(kind=kind, max_epochs=300, patience=300)
    weighted = train_head(HeadInputs(both_x, both_texts, weights), both_y, HeadInputs(x, texts), y, 2, config)
    unweighted = train_head(HeadInputs(both_x, both_texts), both_y, HeadInputs(x, texts), y, 2, config)
    acc = lambda head: float((head.logits(HeadInputs(x, texts)).argmax(1) == y).mean())  # noqa: E731
    assert acc(weighted) >= 0.9
    assert acc(weighted) > acc(unweighted) + 0.1
