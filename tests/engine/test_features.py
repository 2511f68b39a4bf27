import numpy as np
import pytest
import torch

from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
from modeling.engine.backbones.packs import BackboneError

TEXTS = ["我要退款", "物流太慢了，包裹一直没有更新 where is my parcel", "hi", "银行卡扣了两次钱", "ok ok"]


def fp32(**kwargs) -> FeatureConfig:
    return FeatureConfig(dtype="fp32", **kwargs)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_features_do_not_change_when_batched_with_a_longer_text(tiny_backbone, pooling):
    extractor = FeatureExtractor(tiny_backbone, fp32(pooling=pooling))
    alone = extractor.encode(["hi"])
    padded = extractor.encode(["hi", "a much longer sentence that forces padding of the short one"])
    assert padded.shape == (2, extractor.feature_dim)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)


def test_mean_and_last_pooling_differ(tiny_decoder):
    mean = FeatureExtractor(tiny_decoder, fp32(pooling="mean")).encode(TEXTS)
    last = FeatureExtractor(tiny_decoder, fp32(pooling="last")).encode(TEXTS)
    assert not np.allclose(mean, last)


def test_output_keeps_input_order_despite_length_sorting(tiny_backbone):
    extractor = FeatureExtractor(tiny_backbone, fp32(batch_tokens=40))  # forces several batches
    together = extractor.encode(TEXTS)
    one_by_one = np.stack([extractor.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_batches_respect_the_token_budget(tiny_encoder):
    extractor = FeatureExtractor(tiny_encoder, fp32(batch_tokens=30))
    lengths = np.array([3, 12, 5, 10, 2, 7])
    batches = extractor._batches(lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    for batch in batches:
        assert len(batch) * lengths[batch].max() <= 30 or len(batch) == 1
    assert lengths[batches[0][0]] == 12  # longest first


def _reference_hidden_states(spec, text):
    extractor = FeatureExtractor(spec, fp32())
    enc = extractor.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        out = extractor.model(**enc, output_hidden_states=True)
    return out.hidden_states


@pytest.mark.parametrize("layer", [0, 1, "half", "last", -1])
def test_layer_choice_matches_hidden_states(tiny_backbone, layer):
    text = "我要退款 please"
    hidden_states = _reference_hidden_states(tiny_backbone, text)
    extractor = FeatureExtractor(tiny_backbone, fp32(layer=layer, normalize=False))
    index = {"half": 1, "last": 2, -1: 2}.get(layer, layer)
    assert extractor.layer_index == index
    first = 1 if tiny_backbone.kind == "decoder" else 0  # decoders' mean pooling skips the first position
    expected = hidden_states[index][0][first:].mean(0).numpy()
    np.testing.assert_allclose(extractor.encode([text])[0], expected, atol=1e-5)


def test_layers_give_different_features(tiny_encoder):
    first = FeatureExtractor(tiny_encoder, fp32(layer=1)).encode(TEXTS)
    last = FeatureExtractor(tiny_encoder, fp32(layer="last")).encode(TEXTS)
    assert not np.allclose(first, last)


def test_layer_out_of_range_is_a_clear_error(tiny_encoder):
    with pytest.raises(BackboneError, match="out of range"):
        FeatureExtractor(tiny_encoder, fp32(layer=7))


def test_features_are_unit_length_when_normalised(tiny_encoder):
    features = FeatureExtractor(tiny_encoder, fp32()).encode(TEXTS)
    assert features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_choose_max_len_is_the_capped_p95_of_token_lengths(tiny_encoder):
    extractor = FeatureExtractor(tiny_encoder, fp32(max_len_cap=64))
    texts = ["字" * n for n in range(1, 101)]  # char-level tokenizer: n chars + [CLS] + [SEP]
    expected = int(np.ceil(np.percentile([min(n + 2, 64) for n in range(1, 101)], 95)))
    assert extractor.choose_max_len(texts) == expected == 64
    assert extractor.choose_max_len(["字" * n for n in range(1, 21)]) == int(np.ceil(np.percentile(range(3, 23), 95)))
    assert extractor.describe()["max_len"] == extractor.max_len


def test_max_len_truncates_long_texts(tiny_encoder):
    extractor = FeatureExtractor(tiny_encoder, fp32(max_len=6, pooling="mean"))
    a = extractor.encode(["abcdXXXXXXXX"])
    b = extractor.encode(["abcdYYYYYYYY"])  # differs only after the 4 kept characters
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bf16_stays_close_to_fp32(tiny_encoder):
    a = FeatureExtractor(tiny_encoder, fp32()).encode(TEXTS)
    extractor = FeatureExtractor(tiny_encoder, FeatureConfig(dtype="bf16"))
    b = extractor.encode(TEXTS)
    assert extractor.describe()["dtype"] == "bf16"
    assert (a * b).sum(1).min() > 0.98


def test_auto_dtype_records_a_concrete_choice(tiny_encoder):
    assert FeatureExtractor(tiny_encoder, FeatureConfig()).describe()["dtype"] in ("fp32", "bf16")


def test_empty_input_and_progress(tiny_encoder):
    extractor = FeatureExtractor(tiny_encoder, fp32(batch_tokens=40))
    assert extractor.encode([]).shape == (0, extractor.feature_dim)
    calls = []
    extractor.encode(TEXTS, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(TEXTS), len(TEXTS)) and len(calls) > 1


def test_config_key_is_stable_and_ignores_speed_knobs():
    assert FeatureConfig().key() == FeatureConfig().key()
    assert FeatureConfig(threads=1, batch_tokens=10).key() == FeatureConfig().key()
    assert FeatureConfig(pooling="last").key() != FeatureConfig().key()
    assert FeatureConfig(layer=3).key() != FeatureConfig().key()


def test_cache_key_tracks_what_changes_the_numbers(tiny_encoder, tiny_decoder):
    base = FeatureExtractor(tiny_encoder, fp32()).cache_key()
    assert FeatureExtractor(tiny_encoder, fp32(threads=1)).cache_key() == base
    assert FeatureExtractor(tiny_encoder, fp32(max_len=16)).cache_key() != base
    assert FeatureExtractor(tiny_encoder, fp32(layer=1)).cache_key() != base
    assert FeatureExtractor(tiny_decoder, fp32()).cache_key() != base


@pytest.mark.parametrize("bad", [{"pooling": "max"}, {"layer": "middle"}, {"dtype": "fp16"}, {"max_len": 1}])
def test_bad_config_is_rejected(bad):
    with pytest.raises(BackboneError):
        FeatureConfig(**bad)


def test_for_backbone_uses_the_backbone_defaults(tiny_decoder):
    config = FeatureConfig.for_backbone(tiny_decoder, max_len=32)
    assert (config.layer, config.pooling, config.max_len) == ("half", "mean", 32)


def test_big_batches_are_split_where_padding_would_be_wasted(tiny_encoder):
    extractor = FeatureExtractor(tiny_encoder, fp32(batch_tokens=1000, min_batch_tokens=20, max_padding=0.2))
    lengths = np.array([3, 10, 10, 3, 9])
    batches = [sorted(b.tolist()) for b in extractor._batches(lengths)]
    assert batches == [[1, 2, 4], [0, 3]]
    no_split = FeatureExtractor(tiny_encoder, fp32(batch_tokens=1000, max_padding=1.0))
    assert len(no_split._batches(lengths)) == 1


def test_extractors_sharing_a_model_in_threads_keep_their_own_layer(tiny_encoder):
    from concurrent.futures import ThreadPoolExecutor

    mid = FeatureExtractor(tiny_encoder, fp32(layer=1))
    last = FeatureExtractor(tiny_encoder, fp32(layer="last"))
    assert mid.model is last.model
    expected_mid, expected_last = mid.encode(TEXTS), last.encode(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(ex.encode, TEXTS) for ex in (mid, last) * 10]
        results = [job.result() for job in jobs]
    for i, result in enumerate(results):
        np.testing.assert_allclose(result, expected_mid if i % 2 == 0 else expected_last, atol=1e-5)


def test_text_without_tokens_is_a_clear_error(tiny_decoder):
    with pytest.raises(BackboneError, match=r"positions \[1\]"):
        FeatureExtractor(tiny_decoder, fp32()).encode(["hi", "   "])


def test_fast_forward_matches_transformers_on_a_padded_batch(tiny_encoder):
    texts = TEXTS * 3  # several lengths: padded batches, and "ok ok"/"hi" rows that share one
    fast = FeatureExtractor(tiny_encoder, fp32(normalize=False))
    slow = FeatureExtractor(tiny_encoder, fp32(normalize=False, fast_forward=False))
    assert fast._fast is not None and slow._fast is None
    np.testing.assert_allclose(fast.encode(texts), slow.encode(texts), atol=1e-5)


def test_fast_forward_in_bf16_stays_close_to_transformers(tiny_encoder):
    fast = FeatureExtractor(tiny_encoder, FeatureConfig(dtype="bf16")).encode(TEXTS)
    slow = FeatureExtractor(tiny_encoder, FeatureConfig(dtype="bf16", fast_forward=False)).encode(TEXTS)
    assert (fast * slow).sum(1).min() > 0.999


def test_decoders_use_the_transformers_forward(tiny_decoder):
    assert FeatureExtractor(tiny_decoder, fp32())._fast is None


def test_parallel_batches_give_the_same_features_and_ordered_progress(tiny_encoder):
    import threading

    texts = [t * k for t in TEXTS for k in (1, 2, 3)]
    small = {"batch_tokens": 40, "min_batch_tokens": 8}
    serial = FeatureExtractor(tiny_encoder, fp32(parallel_batches=False, **small))
    parallel = FeatureExtractor(tiny_encoder, fp32(threads=2, **small))
    assert parallel._streams(10_000) == 2 and serial._streams(10_000) == 1
    seen = []
    got = parallel.encode(texts, progress=lambda done, total: seen.append((done, threading.current_thread())))
    np.testing.assert_allclose(got, serial.encode(texts), atol=1e-5)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1][0] == len(texts)
    assert {thread for _, thread in seen} == {threading.main_thread()}  # callers may touch thread-bound state


def test_small_jobs_stay_on_one_stream(tiny_encoder):
    extractor = FeatureExtractor(tiny_encoder, fp32(threads=2))
    assert extractor._streams(real_tokens=100) == 1
