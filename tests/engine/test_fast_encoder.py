import pytest
import torch

from modeling.engine.backbones.fast_encoder import FastEncoder, attention_probs, supports
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
