import numpy as np

from modeling.engine.backbones.specs import spec_for_folder
from modeling.engine.routes.probe import MAX_LEN_STEP, ProbeParams, build_extractor


def _extractor(path, texts, **params):
    return build_extractor(ProbeParams(dtype="fp32", **params), spec_for_folder(path), texts, threads=1)


def test_training_max_len_is_the_p95_rounded_up_and_capped(tiny_backbone):
    texts = ["退款" * n for n in range(1, 41)]  # token lengths spread over a wide range
    extractor = _extractor(tiny_backbone, texts)
    lengths = [len(ids) for ids in extractor.tokenizer(texts)["input_ids"]]
    p95 = int(np.ceil(np.percentile(lengths, 95)))
    assert extractor.max_len % MAX_LEN_STEP == 0 and p95 <= extractor.max_len < p95 + MAX_LEN_STEP
    assert _extractor(tiny_backbone, texts, max_len_cap=32).max_len == 32  # the cap wins over a longer P95


def test_an_explicit_max_len_or_no_training_text_keeps_the_configured_value(tiny_backbone):
    assert _extractor(tiny_backbone, ["很长的文本" * 30], max_len=256).max_len == 256
    assert _extractor(tiny_backbone, []).max_len == 256
