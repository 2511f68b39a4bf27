"""Every registered route on the seam: fit, save, load, logits; the version folder round trip; unknown
parameters. Tiny random backbones, no Django (these run with ``-p no:django``)."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from modeling.engine import routes
from modeling.engine.artifacts import ArtifactError
from modeling.engine.data import TrainingDataParams
from modeling.engine.routes import ROUTE_MODULES, get_route, parse_params
from modeling.engine.routes.base import (
    Encoded,
    Examples,
    FitContext,
    LabelInfo,
    LoadContext,
    ParamsError,
    ProgressEvent,
    Taxonomy,
)
from modeling.engine.versions import CalibrationParams, Predictor, calibration_params, train_version

WORDS = {
    "pay": ["付款失败", "扣款两次", "支付不了", "付钱没反应"],
    "ship": ["快递没到", "物流不动", "包裹丢了", "配送太慢"],
    "trip": ["机票改签", "酒店订单", "火车票退票", "航班延误"],
}
FALLBACK = "其他"
KEYS = [*WORDS, FALLBACK]
ROUTES_HERE = ("probe", "tfidf")


def examples(seed: int, per_label: int = 12) -> Examples:
    rng = np.random.default_rng(seed)
    openers, closers = ["我的", "请问", "为什么", "怎么", "又是"], ["了", "呢", "啊", "怎么办", "？"]
    texts, labels = [], []
    for label, words in WORDS.items():
        combos = list(itertools.product(openers, words, closers))
        for i in rng.choice(len(combos), per_label, replace=False):
            opener, word, closer = combos[i]
            texts.append(f"{opener}{word}{closer}")
            labels.append(label)
    for i in range(per_label // 2):
        texts.append(f"{openers[(i + seed) % 5]}天气不错{closers[i % 5]}")
        labels.append(FALLBACK)
    return Examples(texts, labels)


def context(tiny_encoder, tmp_path, **kwargs) -> FitContext:
    return FitContext(
        label_keys=KEYS,
        taxonomy=Taxonomy.from_keys(KEYS, FALLBACK),
        model_root=tmp_path / "models",
        cache_dir=tmp_path / "features",
        extras={"default_backbone": tiny_encoder.path},
        threads=1,
        **kwargs,
    )


def params_for(route: str) -> dict:
    return {"max_epochs": 20} if route == "probe" else {}


@pytest.mark.parametrize("route_name", ROUTES_HERE)
def test_route_fit_save_load_gives_the_same_logits(route_name, tiny_encoder, tmp_path):
    route = get_route(route_name)
    ctx = context(tiny_encoder, tmp_path)
    params = parse_params(route_name, params_for(route_name))
    fitted = route.fit(examples(0), examples(1), params, ctx)
    probe_texts = examples(2).texts
    logits = fitted.logits(probe_texts)
    assert logits.shape == (len(probe_texts), len(KEYS)) and np.isfinite(logits).all()
    fitted.save(tmp_path / "saved")
    loaded = route.load(tmp_path / "saved", LoadContext(model_root=tmp_path / "models", threads=1))
    np.testing.assert_allclose(loaded.logits(probe_texts), logits, rtol=1e-4, atol=1e-4)
    assert loaded.label_keys == KEYS
    encoded = loaded.encode(probe_texts)
    assert (encoded.features is not None) == (route_name == "probe")
    json.dumps(fitted.describe())


def test_every_route_module_registers_under_its_own_name():
    for name in ROUTE_MODULES:
        route = get_route(name)
        assert route.name == name and route.title and route.help
        assert route.Params.model_json_schema()["properties"]


@pytest.mark.parametrize("route_name", ROUTES_HERE)
def test_version_round_trip_predicts_the_same(route_name, tiny_encoder, tmp_path):
    events: list[ProgressEvent] = []
    ctx = context(tiny_encoder, tmp_path, progress=events.append)
    version = train_version(
        route_name, params_for(route_name), examples(0), examples(1), ctx, CalibrationParams(min_val_size=10)
    )
    assert {"fit", "calibrate"} <= {e.stage for e in events}
    assert all(0.0 <= e.fraction <= 1.0 for e in events)
    assert version.metrics["val"]["macro_f1"] > 0.5, version.metrics["val"]
    manifest = version.save(tmp_path / "v1")
    predictor = Predictor.load(tmp_path / "v1", LoadContext(model_root=tmp_path / "models"), expected_manifest=manifest)
    test = examples(3)
    fresh, again = version.predictor().predict(test.texts), predictor.predict(test.texts)
    assert [p.label for p in fresh] == [p.label for p in again]
    np.testing.assert_allclose([p.confidence for p in fresh], [p.confidence for p in again], atol=1e-4)
    metrics = predictor.evaluate(test)
    assert metrics["macro_f1"] > 0.5 and "calibration" in metrics
    assert (predictor.explain is not None) == (route_name == "probe")
    record = json.loads((tmp_path / "v1" / "version.json").read_text())
    assert record["route"] == route_name and record["label_keys"] == KEYS


def test_abstained_and_explained_predictions_carry_their_neighbours(tiny_encoder, tmp_path):
    ctx = context(tiny_encoder, tmp_path)
    train = examples(0)
    rows = [{"ref": i, "label": label} for i, label in enumerate(train.labels)]
    version = train_version(
        "probe",
        {"max_epochs": 20},
        train,
        examples(1),
        ctx,
        explain_rows=rows,
        calibration=CalibrationParams(min_val_size=10),
    )
    predictions = version.predictor().predict(examples(3).texts[:4], k=2, explain=True)
    assert all(len(p.neighbours) == 2 and {"ref", "label", "similarity"} <= set(p.neighbours[0]) for p in predictions)
    assert "text" not in predictions[0].neighbours[0]


def test_a_tampered_version_folder_is_refused(tiny_encoder, tmp_path):
    version = train_version(
        "tfidf", {}, examples(0), examples(1), context(tiny_encoder, tmp_path), CalibrationParams(min_val_size=10)
    )
    version.save(tmp_path / "v")
    calibration = tmp_path / "v" / "calibration.json"
    calibration.write_text(calibration.read_text().replace('"temperature"', '"temperature" ', 1))
    with pytest.raises(ArtifactError):
        Predictor.load(tmp_path / "v")


def test_a_budget_ends_training_and_still_calibrates(tiny_encoder, tmp_path):
    ctx = context(tiny_encoder, tmp_path, deadline=time.monotonic())
    version = train_version(
        "probe",
        {"hybrid": False, "max_epochs": 500, "patience": 500},
        examples(0),
        examples(1),
        ctx,
        CalibrationParams(min_val_size=10),
    )
    assert version.fitted.head.best_epoch == 1 and len(version.fitted.head.history) == 1
    assert version.metrics["stopped_by_budget"] and version.temperature > 0


@pytest.mark.parametrize(
    ("route_name", "data", "key"),
    [
        ("probe", {"head_knd": "mlp"}, "head_knd"),
        ("tfidf", {"hybrid": True}, "hybrid"),
        ("probe", {"hidden_dim": 0}, "hidden_dim"),
    ],
)
def test_unknown_or_invalid_params_name_the_key(route_name, data, key):
    with pytest.raises(ParamsError, match=key) as caught:
        parse_params(route_name, data)
    assert caught.value.key == key


def test_unknown_route_and_calibration_key_are_named():
    with pytest.raises(ParamsError, match="no_such_route"):
        get_route("no_such_route")
    with pytest.raises(ParamsError, match="abstain_targt") as caught:
        calibration_params({"abstain_targt": 0.9})
    assert caught.value.key == "abstain_targt"


class KeywordParams(TrainingDataParams):
    pass


class FittedKeywords:
    """Scores each label by whether its name occurs in the text: a route that learns nothing."""

    def __init__(self, taxonomy: Taxonomy, label_keys: list[str]) -> None:
        self.taxonomy, self.label_keys = taxonomy, label_keys

    def logits(self, texts):
        names = [self.taxonomy.get(key).name for key in self.label_keys]
        return np.array([[3.0 if name in text else 0.0 for name in names] for text in texts], dtype=np.float32)

    def encode(self, texts):
        return Encoded(self.logits(texts), None)

    def save(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        labels = [{"key": label.key, "name": label.name} for label in self.taxonomy.labels]
        (folder / "keywords.json").write_text(json.dumps({"labels": labels, "fallback": self.taxonomy.fallback_key}))

    def describe(self):
        return {}


class KeywordRoute:
    name, title, help, Params, needs_training = (
        "keywords_test",
        "Keywords (tests)",
        "Label names.",
        KeywordParams,
        False,
    )

    def fit(self, train, val, params, ctx):
        return FittedKeywords(ctx.taxonomy, list(ctx.label_keys))

    def load(self, folder, ctx):
        data = json.loads((folder / "keywords.json").read_text())
        taxonomy = Taxonomy(tuple(LabelInfo(**label) for label in data["labels"]), data["fallback"])
        return FittedKeywords(taxonomy, [label.key for label in taxonomy.labels])


def test_a_route_without_training_or_validation_answers_uncalibrated(tmp_path, monkeypatch):
    monkeypatch.setitem(routes.ROUTE_MODULES, "keywords_test", __name__)
    routes.register(KeywordRoute())
    taxonomy = Taxonomy(
        tuple(LabelInfo(key=k, name=n) for k, n in (("pay", "付款"), ("ship", "快递"), (FALLBACK, "其他"))), FALLBACK
    )
    ctx = FitContext(label_keys=["pay", "ship", FALLBACK], taxonomy=taxonomy)
    version = train_version("keywords_test", {}, Examples([], []), Examples([], []), ctx)
    assert version.temperature == 1.0 and "not calibrated" in version.metrics["abstention_warning"]
    version.save(tmp_path / "v")
    predictions = Predictor.load(tmp_path / "v").predict(["付款失败了", "快递没到"])
    assert [p.label for p in predictions] == ["pay", "ship"] and not any(p.abstained for p in predictions)


def test_a_resumed_stage_s_eta_counts_only_its_own_rate(monkeypatch):
    import modeling.engine.routes.base as base

    clock = iter([100.0, 100.0, 110.0])  # created, resumed_at, the report 10 s later
    monkeypatch.setattr(base.time, "monotonic", lambda: next(clock))
    events = []
    progress = base.StageProgress("fit", events.append)
    progress.resumed_at(0.5)  # half the steps were done by the worker that died
    progress(0.6)
    assert events[-1].fraction == 0.6
    assert events[-1].eta_seconds == pytest.approx(10.0 * 0.4 / 0.1)  # not 10 * 0.4 / 0.6
