import os
from pathlib import Path

import pytest
import torch

from modeling.engine.backbones.fast_encoder import FastEncoder, attention_probs, pack, supports
from modeling.engine.backbones.features import load_model


def _batch(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_hidden_states_match_transformers(tiny_encoder, layers):
    model, tokenizer = load_model(tiny_encoder, "fp32")
    input_ids, mask = _batch(tokenizer, ["我要退款", "物流太慢了 where is my parcel", "hi"])
    with torch.inference_mode():
        expected = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[layers]
    got = FastEncoder(model)(input_ids, mask, layers)
    real = mask.bool()  # padded positions are never pooled; only real ones must agree
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)


def test_unsupported_models_are_refused(tiny_decoder):
    model, _ = load_model(tiny_decoder, "fp32")
    assert not supports(model)
    with pytest.raises(ValueError, match="not a supported"):
        FastEncoder(model)


def test_attention_probs_equal_softmax_with_and_without_a_mask():
    scores = torch.randn(3, 2, 5, 5) * 4
    torch.testing.assert_close(attention_probs(scores, None), torch.softmax(scores, -1))
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).float()[:, None, None, :]
    expected = torch.softmax(scores.masked_fill(keep == 0, float("-inf")), -1)
    torch.testing.assert_close(attention_probs(scores, keep), expected)


def test_attention_probs_survive_rows_far_below_the_peak():
    # One row's scores sit 500 below another's: a shift by the global maximum underflows it to a zero sum,
    # so the function must notice and fall back rather than return NaN.
    scores = torch.randn(2, 1, 3, 4)
    scores[0] += 500.0
    probs = attention_probs(scores, None)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs, torch.softmax(scores, -1))


def _transformers_hidden(model, tokenizer, text: str, layers: int) -> torch.Tensor:
    enc = tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        return model(**enc, output_hidden_states=True).hidden_states[layers][0]


@pytest.mark.parametrize("layers", [1, 2])
def test_packed_rows_give_each_text_its_own_transformers_hidden_states(tiny_encoder, layers):
    model, tokenizer = load_model(tiny_encoder, "fp32")
    texts = ["我要退款", "物流太慢了 where is my parcel", "hi", "订单在哪里", "客服"]
    ids = tokenizer(texts)["input_ids"]
    packed = pack(ids, width=24, pad_id=tokenizer.pad_token_id)
    assert packed.input_ids.shape[0] < len(texts)  # several texts share a row
    hidden = FastEncoder(model).packed(packed, layers)
    for i, text in enumerate(texts):
        got = hidden[packed.segment == i]
        torch.testing.assert_close(got, _transformers_hidden(model, tokenizer, text, layers), atol=1e-5, rtol=1e-4)
        assert int(packed.ends[i]) == int(torch.nonzero(packed.segment == i).max())


def test_pack_fills_rows_best_fit_and_refuses_a_text_longer_than_a_row():
    ids = [[1] * n for n in (5, 3, 4, 2, 6)]
    packed = pack(ids, width=10, pad_id=0)
    assert packed.input_ids.shape == (2, 10)  # 20 tokens in two rows of 10: no position left over
    assert (packed.segment >= 0).all()
    positions = packed.position_ids.reshape(-1)
    for i, text in enumerate(ids):  # positions restart at 0 in every text
        assert positions[packed.segment == i].tolist() == list(range(len(text)))
    with pytest.raises(ValueError, match="does not fit"):
        pack([[1] * 11], width=10, pad_id=0)


def test_block_diagonal_mask_keeps_texts_apart():
    packed = pack([[1, 2], [3, 4, 5]], width=8, pad_id=0)
    keep = packed.keep[0, 0]
    segment = packed.segment
    for i in range(8):
        for j in range(8):
            same = segment[i] == segment[j] and segment[i] >= 0
            assert bool(keep[i, j]) == bool(same or i == j)  # a tail position sees itself only


def test_int8_linear_layers_stay_close_to_fp32_and_say_which_kernel_ran(tiny_encoder):
    model, tokenizer = load_model(tiny_encoder, "fp32")
    input_ids, mask = _batch(tokenizer, ["我要退款", "物流太慢了 where is my parcel", "hi"])
    reference = FastEncoder(model)
    int8 = FastEncoder(model, "int8")
    assert (reference.linear_kernel, int8.linear_kernel) == ("plain", "int8_dynamic")
    expected, got = reference(input_ids, mask), int8(input_ids, mask)
    real = mask.bool()
    cosine = torch.nn.functional.cosine_similarity(got[real], expected[real], dim=-1)
    assert cosine.min() > 0.999
    assert not torch.equal(got[real], expected[real])  # it really ran other kernels


def test_int8_needs_an_fp32_model(tiny_encoder):
    model, _ = load_model(tiny_encoder, "bf16")
    with pytest.raises(ValueError, match="fp32"):
        FastEncoder(model, "int8")


def test_int8_linear_stays_exact_where_u8_s8_pair_sums_overflow_int16():
    # 2 x 255 x 127 > 32767: kernels that add pairs in int16 saturate at full range; the chosen range must not.
    from modeling.engine.backbones.fast_encoder import _Linear

    x = torch.cat([torch.full((4, 64), 1.0), torch.full((4, 64), -0.001)], dim=1)
    w = torch.ones(8, 128)
    torch.testing.assert_close(_Linear.build(w, None, "int8")(x), x @ w.t(), rtol=0.02, atol=0.5)


@pytest.fixture(scope="module")
def real_e5():
    from modeling.engine.backbones.packs import BackboneError
    from modeling.engine.backbones.specs import resolve_backbone
    from tests.engine.conftest import REAL_MODEL_ROOT

    try:
        return resolve_backbone("multilingual-e5-small", Path(os.environ.get("MODEL_ROOT", REAL_MODEL_ROOT)))
    except BackboneError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_real_e5_packed_and_int8_features_stay_close_to_transformers(real_e5):
    from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor

    texts = [
        "我的快递三天了还没到",
        "物流太慢了，包裹一直没有更新",
        "付款的时候银行卡被扣了两次钱",
        "支付失败但是钱已经扣了",
        "明天北京的天气怎么样",
        "帮我订一张去上海的机票",
        "退货以后多久能退款",
        "客服一直不回复消息",
    ] * 8
    reference = FeatureExtractor(real_e5, FeatureConfig(dtype="fp32", fast_forward=False)).encode(texts)
    small_jobs = {"min_batch_tokens": 16, "batch_tokens": 256, "threads": 1}
    packed = FeatureExtractor(real_e5, FeatureConfig(dtype="bf16", layout="packed", **small_jobs)).encode(texts)
    int8 = FeatureExtractor(real_e5, FeatureConfig(dtype="int8", layout="packed", **small_jobs)).encode(texts)
    assert (packed * reference).sum(1).min() > 0.9999
    assert (int8 * reference).sum(1).min() > 0.99
