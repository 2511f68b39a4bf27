import numpy as np
import pytest

from modeling.engine.backbones.cache import FeatureCache, cached_encode, text_sha256
from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor

TEXTS = ["我要退款", "物流太慢了", "hi there", "银行卡扣了两次钱", "账户登录不了"]


class CountingExtractor(FeatureExtractor):
    """The real extractor, counting how many texts reach the model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoded = 0

    def encode(self, texts, progress=None):
        self.encoded += len(texts)
        return super().encode(texts, progress)


@pytest.fixture
def extractor(tiny_encoder):
    return CountingExtractor(tiny_encoder, FeatureConfig(dtype="fp32"))


def test_second_call_extracts_nothing_and_returns_the_same_features(extractor, tmp_path):
    first, n1 = cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))
    second, n2 = cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))  # fresh instance reads disk
    assert (n1, n2) == (len(TEXTS), 0)
    assert extractor.encoded == len(TEXTS)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, extractor.encode(TEXTS), atol=1e-6)


def test_only_new_texts_are_extracted_and_order_is_kept(extractor, tmp_path):
    cache = FeatureCache(tmp_path)
    cached_encode(extractor, TEXTS[:3], None, cache)
    mixed = [TEXTS[4], TEXTS[0], TEXTS[3], TEXTS[2]]
    features, n = cached_encode(extractor, mixed, None, cache)
    assert n == 2
    np.testing.assert_allclose(features, extractor.encode(mixed), atol=1e-6)


def test_duplicates_in_one_call_are_extracted_once(extractor, tmp_path):
    features, n = cached_encode(extractor, ["同一句", "同一句", "另一句"], None, FeatureCache(tmp_path))
    assert n == 2 and extractor.encoded == 2
    np.testing.assert_array_equal(features[0], features[1])


def test_given_hashes_are_used_as_keys(extractor, tmp_path):
    hashes = [text_sha256(t) for t in TEXTS]
    _, n1 = cached_encode(extractor, TEXTS, hashes, FeatureCache(tmp_path))
    _, n2 = cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))
    assert (n1, n2) == (len(TEXTS), 0)


def test_bad_hashes_are_rejected(extractor, tmp_path):
    with pytest.raises(ValueError, match="sha256"):
        cached_encode(extractor, ["a"], ["not-a-hash"], FeatureCache(tmp_path))
    with pytest.raises(ValueError, match="length"):
        cached_encode(extractor, ["a", "b"], [text_sha256("a")], FeatureCache(tmp_path))


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_corrupt_shard_is_set_aside_and_re_extracted(extractor, tmp_path, damage):
    reference, _ = cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))
    (shard,) = list(tmp_path.rglob("shard-*.npz"))
    data = shard.read_bytes()
    shard.write_bytes(b"\x00garbage" * 10 if damage == "garbage" else data[: len(data) // 2])
    features, n = cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))
    assert n == len(TEXTS)
    np.testing.assert_allclose(features, reference, atol=1e-6)
    assert shard.with_suffix(".corrupt").exists()
    _, n_again = cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))
    assert n_again == 0


def test_leftover_temp_file_from_a_killed_writer_is_ignored(extractor, tmp_path):
    cache = FeatureCache(tmp_path)
    folder = cache.namespace_dir(extractor.cache_key())
    folder.mkdir(parents=True)
    (folder / ".tmp-shard-dead.npz").write_bytes(b"half written")
    _, n = cached_encode(extractor, TEXTS, None, cache)
    assert n == len(TEXTS)


def test_misses_are_stored_in_chunks(extractor, tmp_path):
    cache = FeatureCache(tmp_path)
    calls = []
    _, n = cached_encode(extractor, TEXTS, None, cache, progress=lambda d, t: calls.append((d, t)), chunk_size=2)
    assert n == 5
    assert cache.stats(extractor.cache_key())["shards"] == 3
    assert calls[-1] == (5, 5)


def test_two_writers_share_the_directory(extractor, tmp_path):
    # Two cache instances stand in for two worker processes writing different shards.
    a, b = FeatureCache(tmp_path), FeatureCache(tmp_path)
    cached_encode(extractor, TEXTS[:2], None, a)
    cached_encode(extractor, TEXTS[2:], None, b)
    _, n = cached_encode(extractor, TEXTS, None, a)  # `a` picks up b's shard
    assert n == 0
    assert FeatureCache(tmp_path).stats(extractor.cache_key())["vectors"] == len(TEXTS)


def test_a_different_config_does_not_reuse_features(tiny_encoder, tmp_path):
    cache = FeatureCache(tmp_path)
    mean = CountingExtractor(tiny_encoder, FeatureConfig(dtype="fp32"))
    last = CountingExtractor(tiny_encoder, FeatureConfig(dtype="fp32", pooling="last"))
    cached_encode(mean, TEXTS, None, cache)
    features, n = cached_encode(last, TEXTS, None, cache)
    assert n == len(TEXTS)
    np.testing.assert_allclose(features, last.encode(TEXTS), atol=1e-6)


def test_shards_hold_hashes_not_texts(extractor, tmp_path):
    cached_encode(extractor, TEXTS, None, FeatureCache(tmp_path))
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for text in TEXTS:
        assert text.encode("utf-8") not in blob and text.encode("utf-32-le") not in blob
