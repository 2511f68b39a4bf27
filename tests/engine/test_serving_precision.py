"""INT8 serving: the quality gate decides whether a version may serve in INT8, the timing probe whether it
pays on this machine; a version that fails the gate keeps its trained precision. Tiny random encoder."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from modeling.engine.routes.base import LoadContext
from modeling.engine.serving_precision import MAX_ECE_RISE, MAX_F1_DROP, GateResult, quality_gate
from modeling.engine.versions import CalibrationParams, Predictor, train_version
from tests.engine.test_routes import context, examples


def _metrics(macro_f1: float, ece: float) -> dict:
    return {"macro_f1": macro_f1, "calibration": {"ece": ece}}


@pytest.mark.parametrize(
    ("f1_drop", "ece_rise", "passed", "reason"),
    [
        (0.0, 0.0, True, None),
        (MAX_F1_DROP * 0.9, MAX_ECE_RISE * 0.9, True, None),
        (MAX_F1_DROP * 1.2, 0.0, False, "macro-F1"),
        (0.0, MAX_ECE_RISE * 1.2, False, "ECE"),
        (-0.02, -0.02, True, None),  # better in INT8 is fine
    ],
)
def test_quality_gate_allows_half_a_point_of_macro_f1_and_a_hundredth_of_ece(f1_drop, ece_rise, passed, reason):
    gate = quality_gate("bf16", _metrics(0.9, 0.03), _metrics(0.9 - f1_drop, 0.03 + ece_rise), n_val=100)
    assert gate.passed is passed
    assert (gate.reason is None) if reason is None else (reason in gate.reason)
    assert GateResult.from_dict(json.loads(json.dumps(gate.to_dict()))) == gate


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("int8")
    ctx = context(tiny_encoder, tmp_path)
    version = train_version(
        "probe", {"max_epochs": 20}, examples(0), examples(1), ctx, CalibrationParams(min_val_size=10)
    )
    return version, ctx


def test_training_records_the_gate_measured_on_val(trained, tmp_path):
    version, _ = trained
    gate = GateResult.from_dict(version.metrics["serving"]["int8_gate"])
    assert gate.reference == version.fitted.describe()["dtype"] and gate.precision == "int8"
    assert gate.n_val == len(examples(1))
    assert gate.reference_macro_f1 == pytest.approx(version.metrics["val"]["macro_f1"])
    int8 = version.fitted.int8_variant()
    assert int8.source.extractor.dtype == "int8"
    assert not np.array_equal(
        int8.encode(examples(1).texts).features, version.fitted.encode(examples(1).texts).features
    )
    version.save(tmp_path / "v")
    record = json.loads((tmp_path / "v" / "version.json").read_text())
    assert record["serving"]["int8_gate"] == gate.to_dict()


def _saved_with_gate(version, gate: GateResult, folder):
    replace(version, serving={"int8_gate": gate.to_dict()}).save(folder)
    return folder


def test_a_version_that_fails_the_gate_keeps_its_trained_precision(trained, tmp_path):
    version, ctx = trained
    failed = quality_gate("bf16", _metrics(0.9, 0.03), _metrics(0.8, 0.03), n_val=24)
    assert not failed.passed
    predictor = Predictor.load(
        _saved_with_gate(version, failed, tmp_path / "v"), LoadContext(model_root=ctx.model_root)
    )
    trained_dtype = version.fitted.describe()["dtype"]
    assert predictor.precision == trained_dtype != "int8"
    assert predictor.info["served_precision"] == trained_dtype
    assert predictor.fitted.source.extractor.dtype == trained_dtype


def test_a_version_that_passes_serves_int8_exactly_where_the_probe_finds_it_faster(trained, tmp_path):
    version, ctx = trained
    passed = quality_gate("bf16", _metrics(0.9, 0.03), _metrics(0.9, 0.03), n_val=24)
    predictor = Predictor.load(
        _saved_with_gate(version, passed, tmp_path / "v"), LoadContext(model_root=ctx.model_root)
    )
    int8 = version.fitted.int8_variant()
    expected = "int8" if version.fitted.int8_pays_here(int8) else version.fitted.describe()["dtype"]
    assert predictor.precision == expected == predictor.fitted.source.extractor.dtype
    texts = examples(3).texts
    served = version.fitted if expected != "int8" else int8
    np.testing.assert_allclose(predictor.encode(texts).features, served.encode(texts).features, atol=1e-6)


def test_int8_features_are_cached_under_their_own_scheme(tiny_encoder, monkeypatch):
    from modeling.engine.backbones import fast_encoder
    from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor

    int8 = FeatureExtractor(tiny_encoder, FeatureConfig(dtype="int8"))
    bf16 = FeatureExtractor(tiny_encoder, FeatureConfig(dtype="bf16"))
    key = int8.cache_key()
    assert key != bf16.cache_key()
    # Features from 7-bit activations are other numbers than from 8-bit ones: never the same cache entry.
    monkeypatch.setattr(fast_encoder, "_reduce_range_verdict", not fast_encoder._int8_reduce_range())
    assert int8.cache_key() != key
