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
