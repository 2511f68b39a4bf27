import numpy as np

from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
from modeling.engine.backbones.specs import spec_for_folder
from modeling.services.features import MAX_LEN_STEP, fit_max_len


def _extractor(path, cap: int = 256) -> FeatureExtractor:
    return FeatureExtractor(spec_for_folder(path), FeatureConfig(max_len_cap=cap, dtype="fp32", threads=1))


def test_training_max_len_is_the_p95_rounded_up_and_capped(tiny_backbone):
    texts = ["退款" * n for n in range(1, 41)]  # token lengths spread over a wide range
    extractor = _extractor(tiny_backbone)
    lengths = [len(ids) for ids in extractor.tokenizer(texts)["input_ids"]]
    p95 = int(np.ceil(np.percentile(lengths, 95)))
    max_len = fit_max_len(extractor, texts)
    assert max_len % MAX_LEN_STEP == 0 and p95 <= max_len < p95 + MAX_LEN_STEP
    assert extractor.max_len == max_len
    assert fit_max_len(_extractor(tiny_backbone, cap=32), texts) == 32  # the cap wins over a longer P95


def test_an_explicit_max_len_or_no_training_text_keeps_the_configured_value(tiny_backbone):
    extractor = _extractor(tiny_backbone)
    assert fit_max_len(extractor, ["很长的文本" * 30], explicit=256) == 256
    assert fit_max_len(_extractor(tiny_backbone), []) == 256
