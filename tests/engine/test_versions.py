"""train_version → save → Predictor.load → predict / evaluate, on synthetic features (the vectors route)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modeling.engine.artifacts import ArtifactError
from modeling.engine.routes import parse_params
from modeling.engine.routes.base import Cancelled, Examples, ParamsError
from modeling.engine.versions import Predictor
from tests.engine.vector_route import fit, texts_for

torch.set_num_threads(1)

KEYS = ["旅行", "支付", "物流", "其他"]
FALLBACK = "其他"
WORDS = {"旅行": "机票", "支付": "付款", "物流": "快递", "其他": "随便"}


def split(n: int, seed: int, spread: float = 2.5) -> tuple[list[str], list[str]]:
    """Overlapping blobs (so confidence varies) plus texts carrying a class keyword half of the time."""
    centers = np.random.default_rng(42).normal(0, 1.5, (len(KEYS), 10))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(KEYS), n)
    x = (centers[y] + rng.normal(0, spread, (n, 10))).astype(np.float32)
    texts = [("我想问" + WORDS[KEYS[c]] if rng.uniform() < 0.5 else "我想问一下") for c in y]
    return texts_for(x, texts), [KEYS[c] for c in y]


@pytest.fixture(scope="module")
def data():
    return {name: split(n, seed) for name, n, seed in (("train", 400, 1), ("val", 200, 2), ("test", 200, 3))}


def train(data, **options):
    config = {"head_kind": "linear", "abstain_target": 0.8, "coverage_floor": 0.05, **options}
    return fit(*data["train"], *data["val"], config, KEYS, FALLBACK)


def test_train_calibrate_and_threshold_on_val(data):
    result = train(data)
    val = result.metrics["val"]
    assert val["n"] == 200 and 0.4 < val["accuracy"] < 1.0
    assert val["abstention"]["selective_accuracy"] >= 0.8 and val["abstention"]["coverage"] < 1.0
    assert result.choice.target_met
    assert val["calibration"]["nll"] <= val["calibration"]["nll_before"] + 1e-9
    json.dumps(result.metrics, ensure_ascii=False)


def test_predictor_round_trip_gives_identical_probabilities(data, tmp_path):
    result = train(data, hybrid=True, per_class_thresholds=True)
    before = result.predictor().score(data["test"][0]).probs
    manifest = result.save(tmp_path / "v1")
    assert {"calibration.json", "metrics.json", "version.json", "route/head/head.json"} <= set(manifest["files"])
    predictor = Predictor.load(tmp_path / "v1")
    np.testing.assert_array_equal(predictor.score(data["test"][0]).probs, before)
    assert predictor.manifest["files"] == manifest["files"]
    calibration = json.loads((tmp_path / "v1" / "calibration.json").read_text(encoding="utf-8"))
    assert calibration["label_keys"] == KEYS and calibration["fallback_key"] == FALLBACK
    assert calibration["temperature"] == result.temperature


def test_predictions_abstain_to_the_fallback(data):
    predictor = train(data).predictor()
    predictions = predictor.predict(data["test"][0], k=2)
    assert len(predictions) == 200
    abstained = [p for p in predictions if p.abstained]
    answered = [p for p in predictions if not p.abstained]
    assert abstained and answered
    tau, delta = predictor.choice.threshold, predictor.choice.ood_threshold
    fallback_probs = predictor.score(data["test"][0]).probs[:, KEYS.index(FALLBACK)]
    for i, p in enumerate(predictions):
        if p.abstained:  # the confidence is the probability of the label returned (the fallback)
            assert p.confidence == pytest.approx(fallback_probs[i], abs=1e-6)
    for p in abstained:
        assert p.label == FALLBACK and p.top_label == p.topk[0][0] and p.top_confidence == p.topk[0][1]
        if p.abstain_reason == "below_threshold":
            assert p.top_confidence < tau
        else:
            assert p.abstain_reason == "out_of_scope" and p.ood_score > delta
    assert all(p.label == p.topk[0][0] == p.top_label and len(p.topk) == 2 for p in answered)
    assert all(p.abstain_reason is None and p.confidence == p.top_confidence for p in answered)
    assert all(p.topk[0][1] >= p.topk[1][1] for p in predictions)
    assert predictor.predict([]) == []


def test_evaluate_on_test_matches_the_val_metric_shape(data):
    result = train(data)
    test = result.predictor().evaluate(Examples(*data["test"]))
    assert set(result.metrics["val"]) == set(test)
    assert test["n"] == 200 and "oos_recall" in test["abstention"]
    with pytest.raises(ValueError, match="unknown label keys 售后"):
        result.predictor().evaluate(Examples(data["test"][0], ["售后"] * 200))


def test_tampered_artifacts_are_refused(data, tmp_path):
    train(data).save(tmp_path / "v1")
    (tmp_path / "v1" / "calibration.json").write_text('{"temperature": 0.01}', encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"calibration\.json"):
        Predictor.load(tmp_path / "v1")


def test_crash_while_saving_leaves_no_version(data, tmp_path):
    result = train(data)

    def broken_save(_folder) -> None:
        raise OSError("disk full")

    result.fitted.save = broken_save
    with pytest.raises(OSError, match="disk full"):
        result.save(tmp_path / "v1")
    assert not (tmp_path / "v1").exists() and not list(tmp_path.iterdir())


def test_too_small_val_split_is_a_clear_error(data):
    small_val = (data["val"][0][:5], data["val"][1][:5])
    with pytest.raises(ValueError, match="validation split has 5 labelled texts"):
        fit(*data["train"], *small_val, {}, KEYS, FALLBACK)


def test_config_and_label_errors(data):
    with pytest.raises(ValueError, match="fallback label"):
        fit(*data["train"], *data["val"], {}, [*KEYS, "售后"], "售后x")
    with pytest.raises(ParamsError, match="colour"):
        parse_params("probe", {"colour": "red"})
    with pytest.raises(ParamsError, match="head_kind"):
        parse_params("probe", {"head_kind": "tfidf"})
    params = parse_params("probe", {"head_kind": "mlp", "hybrid": True, "loss": "focal", "hidden_dim": 32})
    assert parse_params("probe", params.model_dump()) == params
    config = params.head_config()
    assert (config.kind, config.feature_kind, config.hidden_dim, config.loss) == ("hybrid", "mlp", 32, "focal")


def test_cancel_and_progress(data):
    seen: list = []
    fit(*data["train"], *data["val"], {}, KEYS, FALLBACK, progress=seen.append)
    stages = [event.stage for event in seen]
    assert stages[0] == "fit" and stages[-1] == "calibrate" and seen[-1].fraction == 1.0
    for stage in ("fit", "calibrate"):
        fractions = [e.fraction for e in seen if e.stage == stage]
        assert fractions == sorted(fractions)
    assert all(e.eta_seconds is None or e.eta_seconds >= 0 for e in seen)
    with pytest.raises(Cancelled):
        fit(*data["train"], *data["val"], {}, KEYS, FALLBACK, should_stop=lambda: True)


def test_coverage_target(data):
    result = train(data, abstain_target_kind="coverage", abstain_target=0.6)
    assert 0.6 <= result.metrics["val"]["abstention"]["coverage"] < 0.62
