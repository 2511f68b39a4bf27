"""Served feature vectors are shared between versions on the same backbone setup, and only between them."""

from __future__ import annotations

import numpy as np

from modeling.engine.backbones.recent import RecentFeatures
from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import LoadContext
from tests.engine.test_routes import context, examples


def fitted_probe(tiny_encoder, tmp_path, name: str, **params):
    route = get_route("probe")
    params = parse_params("probe", {"max_epochs": 5, **params})
    fitted = route.fit(examples(0), examples(1), params, context(tiny_encoder, tmp_path))
    fitted.save(tmp_path / name)
    return route


def test_a_second_version_on_the_same_backbone_reuses_the_first_one_s_features(tiny_encoder, tmp_path):
    route = fitted_probe(tiny_encoder, tmp_path, "champion")
    fitted_probe(tiny_encoder, tmp_path, "shadow", head_kind="mlp", hybrid=False)
    recent = RecentFeatures(capacity=100)
    ctx = LoadContext(model_root=tmp_path / "models", threads=1, recent=recent)
    champion, shadow = route.load(tmp_path / "champion", ctx), route.load(tmp_path / "shadow", ctx)
    alone = route.load(tmp_path / "shadow", LoadContext(model_root=tmp_path / "models", threads=1))
    texts = examples(2).texts[:6]

    champion.encode(texts)
    assert champion.source.last_extracted == len(texts) and len(recent) == len(texts)
    shared = shadow.encode(texts)
    assert shadow.source.last_extracted == 0 and recent.hits == len(texts)
    np.testing.assert_allclose(shared.logits, alone.logits(texts), rtol=1e-5, atol=1e-5)

    shadow.encode([*texts[:2], "一段新的文字"])
    assert shadow.source.last_extracted == 1


def test_a_different_feature_setup_never_takes_another_s_vectors(tiny_encoder, tmp_path):
    route = fitted_probe(tiny_encoder, tmp_path, "short", max_len=16)
    fitted_probe(tiny_encoder, tmp_path, "long", max_len=64)
    recent = RecentFeatures(capacity=100)
    ctx = LoadContext(model_root=tmp_path / "models", threads=1, recent=recent)
    short, long = route.load(tmp_path / "short", ctx), route.load(tmp_path / "long", ctx)
    assert short.source.identity != long.source.identity
    texts = examples(2).texts[:4]
    short.encode(texts)
    long.encode(texts)
    assert long.source.last_extracted == len(texts) and recent.hits == 0


def test_the_map_keeps_only_its_capacity_and_drops_the_oldest():
    recent = RecentFeatures(capacity=2)
    keys, _ = recent.lookup("setup", ["a", "b", "c"])
    recent.store(keys, np.eye(3, dtype=np.float32))
    _, found = recent.lookup("setup", ["a", "b", "c"])
    assert sorted(found) == [1, 2] and len(recent) == 2
