"""The decoder routes (lora, prefix) on a tiny random decoder: scoring, fit/save/load, checkpoints, budget."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modeling.engine.routes import decoder, get_route, parse_params
from modeling.engine.routes.base import (
    Cancelled,
    Examples,
    FitContext,
    LoadContext,
    ParamsError,
    Taxonomy,
    holds_checkpoint,
)

KEYS = ["退款", "物流快递", "其他"]
TRAIN = Examples(
    ["我要退款", "退款多久到账", "快递到哪里了", "包裹物流太慢", "你好", "今天天气"],
    ["退款", "退款", "物流快递", "物流快递", "其他", "其他"],
)
TEXTS = ["退款", "快递包裹到了吗 物流", "你好呀", "这是一段长一些的文本 用来检查 不同长度的行 会不会 互相影响"]


def fit_ctx(tmp_path=None, **kwargs) -> FitContext:
    return FitContext(list(KEYS), Taxonomy.from_keys(KEYS, "其他"), checkpoint_dir=tmp_path, **kwargs)


def params(route: str, tiny_decoder, **overrides):
    base = {"backbone": tiny_decoder.path, "dtype": "fp32", "batch_size": 2, "epochs": 1.0}
    return parse_params(route, {**base, **overrides})


@pytest.fixture(scope="module")
def scorer_setup(tiny_decoder):
    model, tokenizer = decoder.load_causal_lm(tiny_decoder, "fp32")
    taxonomy = Taxonomy.from_keys(KEYS, "其他")
    prompt = decoder.encode_prompt(tokenizer, decoder.build_prompt(tokenizer, taxonomy, KEYS), 64)
    return model, tokenizer, prompt


def test_cached_prefix_scores_equal_full_prompt_scores(scorer_setup):
    model, tokenizer, prompt = scorer_setup
    scorer = decoder.LabelScorer(model, prompt)
    # a small token budget puts texts of different lengths into padded batches of several rows
    cached = decoder.score_texts(scorer, tokenizer, TEXTS, budget_tokens=60)
    naive = np.stack([decoder.score_without_cache(model, tokenizer, prompt, t) for t in TEXTS])
    np.testing.assert_allclose(cached, naive, rtol=1e-4, atol=1e-4)
    assert len(prompt.prefix_ids) > 20  # the cache holds a real instruction


def test_length_normalised_scores_divide_by_label_length(scorer_setup):
    model, tokenizer, prompt = scorer_setup
    scorer = decoder.LabelScorer(model, prompt)
    raw = decoder.score_texts(scorer, tokenizer, TEXTS)
    normed = decoder.score_texts(scorer, tokenizer, TEXTS, length_norm=True)
    lengths = np.array([len(ids) for ids in prompt.label_ids])
    np.testing.assert_allclose(normed * lengths, raw, rtol=1e-5)


@pytest.mark.parametrize("route", ["lora", "prefix"])
@pytest.mark.parametrize("label_tokens", ["off", "on"])
def test_fit_save_load_logits(route, label_tokens, tiny_decoder, tmp_path):
    fitted = get_route(route).fit(
        TRAIN, TRAIN, params(route, tiny_decoder, label_tokens=label_tokens, epochs=2.0), fit_ctx()
    )
    logits = fitted.logits(TEXTS)
    assert logits.shape == (len(TEXTS), len(KEYS)) and np.isfinite(logits).all()
    assert fitted.report["steps"] == 6 and fitted.report["stopped_by"] == "epochs"
    encoded = fitted.encode(TEXTS)
    assert encoded.features.shape[0] == len(TEXTS)
    fitted.save(tmp_path / "model")
    loaded = get_route(route).load(tmp_path / "model", LoadContext())
    np.testing.assert_allclose(loaded.logits(TEXTS), logits, rtol=1e-4, atol=1e-4)
    assert loaded.label_keys == KEYS
    facts = loaded.describe()
    assert facts["label_tokens"] == (label_tokens == "on") and facts["adapter_parameters"] > 0


def test_training_moves_the_gold_label_up(tiny_decoder):
    """Loss on the label tokens: after training, the gold label's log-probability is higher than before."""
    p = params("lora", tiny_decoder, lr=1e-2, epochs=5.0, warmup_steps=0)
    before = get_route("lora").fit(TRAIN, TRAIN, params("lora", tiny_decoder, epochs=0.01), fit_ctx())
    after = get_route("lora").fit(TRAIN, TRAIN, p, fit_ctx())
    gold = [KEYS.index(label) for label in TRAIN.labels]
    rows = np.arange(len(gold))
    assert after.logits(TRAIN.texts)[rows, gold].mean() > before.logits(TRAIN.texts)[rows, gold].mean()


@pytest.mark.parametrize("route", ["lora", "prefix"])
def test_resume_from_checkpoint_continues_the_same_run(route, tiny_decoder, tmp_path):
    p = params(route, tiny_decoder, epochs=2.0, checkpoint_every=2, **({"dropout": 0.0} if route == "lora" else {}))
    straight = get_route(route).fit(TRAIN, TRAIN, p, fit_ctx())

    steps = []

    def stop_after_three() -> bool:
        return len(steps) >= 3

    with pytest.raises(Cancelled):
        get_route(route).fit(
            TRAIN, TRAIN, p, fit_ctx(tmp_path, should_stop=stop_after_three, progress=lambda e: steps.append(e))
        )
    assert (tmp_path / "train_state.pt").exists() and holds_checkpoint(tmp_path)  # what the app looks for
    resumed = get_route(route).fit(TRAIN, TRAIN, p, fit_ctx(tmp_path))
    assert resumed.report["resumed_from_step"] == 2 and resumed.report["steps"] == 6
    np.testing.assert_allclose(resumed.logits(TEXTS), straight.logits(TEXTS), rtol=1e-4, atol=1e-4)


def test_checkpoint_of_another_run_is_not_resumed(tiny_decoder, tmp_path):
    get_route("lora").fit(TRAIN, TRAIN, params("lora", tiny_decoder, checkpoint_every=1), fit_ctx(tmp_path))
    other = get_route("lora").fit(
        TRAIN, TRAIN, params("lora", tiny_decoder, checkpoint_every=1, lr=5e-5), fit_ctx(tmp_path)
    )
    assert other.report["resumed_from_step"] == 0


def test_budget_ends_training_cleanly(tiny_decoder, tmp_path):
    ctx = fit_ctx(deadline=time.monotonic())
    fitted = get_route("lora").fit(TRAIN, TRAIN, params("lora", tiny_decoder, epochs=5.0), ctx)
    assert fitted.report["stopped_by"] == "budget" and fitted.report["steps"] < fitted.report["planned_steps"]
    assert np.isfinite(fitted.logits(TEXTS)).all()
    fitted.save(tmp_path / "model")
    assert get_route("lora").load(tmp_path / "model", LoadContext()).logits(TEXTS).shape == (len(TEXTS), 3)


def test_progress_reports_an_eta(tiny_decoder):
    events = []
    get_route("prefix").fit(TRAIN, TRAIN, params("prefix", tiny_decoder, epochs=2.0), fit_ctx(progress=events.append))
    assert [e.stage for e in events] == ["fit"] * 6
    assert events[-1].fraction == 1.0 and all(e.eta_seconds is not None for e in events)
    assert [e.fraction for e in events] == sorted(e.fraction for e in events)


@pytest.mark.parametrize("route", ["lora", "prefix", "zero_shot"])
def test_unknown_parameter_is_an_error(route):
    with pytest.raises(ParamsError) as info:
        parse_params(route, {"rank": 8})
    assert info.value.key == "rank"


def test_out_of_range_parameters_are_errors():
    with pytest.raises(ParamsError):
        parse_params("lora", {"max_len": 1024})
    with pytest.raises(ParamsError):
        parse_params("prefix", {"virtual_tokens": 5})


def test_unknown_train_label_is_an_error(tiny_decoder):
    bad = Examples(["你好"], ["不存在"])
    with pytest.raises(ParamsError):
        get_route("lora").fit(bad, bad, params("lora", tiny_decoder), fit_ctx())


def test_reason_is_one_short_sentence(tiny_decoder):
    fitted = get_route("lora").fit(TRAIN, TRAIN, params("lora", tiny_decoder, epochs=0.01), fit_ctx())
    reason = fitted.reason("我要退款", "退款")
    assert isinstance(reason, str) and "\n" not in reason and len(reason) < 200
