"""encoder_ft on a tiny random encoder: fit, save, load, logits; LoRA and full; budget, cancel, params, merging."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from modeling.engine.backbones.packs import BackboneError
from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import (
    Cancelled,
    Examples,
    FitContext,
    LoadContext,
    ParamsError,
    Taxonomy,
    holds_checkpoint,
)
from modeling.engine.routes.encoder_ft import CHECKPOINT_FILE, META_FILE, WEIGHTS_FILE, merged_encoder
from modeling.engine.routes.finetune import TrainableSpec, build_trainable, collate, length_batches

KEYS = ["refund", "account", "ship", "其他"]
TEXTS = {
    "refund": ["退款 怎么 办", "我要 退货 退款", "退款 还没 到账", "申请 退款"],
    "account": ["密码 忘了", "登录 不了 账户", "账户 被 锁", "改 密码"],
    "ship": ["物流 太慢", "快递 没到", "包裹 丢了", "物流 信息 不动"],
}


def _examples(repeat: int) -> Examples:
    texts = [t for _ in range(repeat) for label in TEXTS for t in TEXTS[label]]
    labels = [label for _ in range(repeat) for label in TEXTS for _ in TEXTS[label]]
    return Examples(texts, labels)


def _ctx(tiny_encoder, **kwargs) -> FitContext:
    root = tiny_encoder.path
    return FitContext(label_keys=KEYS, taxonomy=Taxonomy.from_keys(KEYS, "其他"), model_root=root, **kwargs)


def _params(tiny_encoder, **kwargs):
    base = {"backbone": tiny_encoder.path, "precision": "fp32", "max_epochs": 4, "batch_size": 8}
    return parse_params("encoder_ft", {**base, **kwargs})


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_fit_save_load_gives_the_same_logits(tiny_encoder, tmp_path, mode):
    route = get_route("encoder_ft")
    train, val = _examples(6), _examples(1)
    fitted = route.fit(train, val, _params(tiny_encoder, mode=mode, lr=5e-3), _ctx(tiny_encoder))
    logits = fitted.logits(val.texts)
    assert logits.shape == (len(val), len(KEYS))
    assert np.isfinite(logits).all()
    fitted.save(tmp_path / "v")
    meta = json.loads((tmp_path / "v" / META_FILE).read_text())
    assert meta["fingerprint"] == tiny_encoder.fingerprint and meta["mode"] == mode
    loaded = route.load(tmp_path / "v", LoadContext(model_root=tiny_encoder.path))
    np.testing.assert_allclose(loaded.logits(val.texts), logits, atol=1e-5)
    encoded = loaded.encode(val.texts)
    np.testing.assert_allclose(np.linalg.norm(encoded.features, axis=1), 1.0, atol=1e-5)
    assert loaded.describe()["backbone_name"] == tiny_encoder.name
    assert loaded.describe()["backbone_fingerprint"] == tiny_encoder.fingerprint


def test_lora_saves_only_the_adapter(tiny_encoder, tmp_path):
    fitted = get_route("encoder_ft").fit(
        _examples(2), _examples(1), _params(tiny_encoder, max_epochs=1, tfidf_ensemble=False), _ctx(tiny_encoder)
    )
    fitted.save(tmp_path / "v")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "v" / WEIGHTS_FILE))
    assert saved and all("lora_" in name for name in saved)
    assert not (tmp_path / "v" / "tfidf").exists()


def test_training_learns_the_classes(tiny_encoder):
    train = _examples(8)
    fitted = get_route("encoder_ft").fit(
        train, _examples(1), _params(tiny_encoder, mode="full", lr=3e-3, max_epochs=8, tfidf_ensemble=False),
        _ctx(tiny_encoder),
    )  # fmt: skip
    predicted = fitted.logits(train.texts).argmax(1)
    truth = np.array([KEYS.index(label) for label in train.labels])
    assert (predicted == truth).mean() > 0.9


def test_merged_lora_serving_matches_the_unmerged_model(tiny_encoder):
    """The fast forward over the merged weights gives the peft model's own logits."""
    spec = TrainableSpec(mode="lora", bf16=False)
    torch.manual_seed(0)
    model = build_trainable(tiny_encoder.path, spec, len(KEYS))
    with torch.no_grad():  # LoRA B starts at zero: give it weights so merging changes something
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    from peft import get_peft_model_state_dict

    from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor, load_tokenizer

    changed = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model.encoder).items()}
    merged = merged_encoder(tiny_encoder, "lora", spec, changed)
    tokenizer = load_tokenizer(tiny_encoder.path)
    config = FeatureConfig(max_len=32, dtype="fp32", normalize=False)
    extractor = FeatureExtractor(tiny_encoder, config, model_and_tokenizer=(merged, tokenizer))
    assert extractor._fast is not None
    texts = _examples(1).texts
    ids = tokenizer(texts, truncation=True, max_length=32)["input_ids"]
    input_ids, mask = collate(ids, np.arange(len(texts)), tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad():
        unmerged = model.pooled(input_ids, mask).numpy()
    base_only = FeatureExtractor(tiny_encoder, config).encode(texts)
    np.testing.assert_allclose(extractor.encode(texts), unmerged, atol=1e-4)
    assert np.abs(base_only - unmerged).max() > 1e-2


def test_budget_ends_training_cleanly(tiny_encoder, tmp_path):
    ctx = _ctx(tiny_encoder, deadline=time.monotonic() + 0.5)
    started = time.monotonic()
    fitted = get_route("encoder_ft").fit(_examples(40), _examples(1), _params(tiny_encoder, max_epochs=100), ctx)
    assert time.monotonic() - started < 30
    assert fitted.meta["stopped_by"] == "budget"
    assert fitted.meta["history"][-1]["epoch"] >= 1  # it trained, then stopped at the deadline
    fitted.save(tmp_path / "v")
    assert (tmp_path / "v" / WEIGHTS_FILE).is_file()


def test_cancel_raises_cancelled(tiny_encoder):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        get_route("encoder_ft").fit(
            _examples(6), _examples(1), _params(tiny_encoder), _ctx(tiny_encoder, should_stop=should_stop)
        )


def test_progress_reports_fit_fractions_with_eta(tiny_encoder):
    events = []
    get_route("encoder_ft").fit(
        _examples(3), _examples(1), _params(tiny_encoder, max_epochs=2), _ctx(tiny_encoder, progress=events.append)
    )
    fractions = [e.fraction for e in events if e.stage == "fit"]
    assert fractions[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in fractions)
    assert any(e.eta_seconds is not None for e in events)


def test_unknown_and_out_of_range_params_name_the_key():
    with pytest.raises(ParamsError) as unknown:
        parse_params("encoder_ft", {"lora_rank": 8})
    assert unknown.value.key == "lora_rank"
    with pytest.raises(ParamsError) as bad:
        parse_params("encoder_ft", {"lora_r": 0})
    assert bad.value.key == "lora_r"
    assert parse_params("encoder_ft", {}).mode == "lora"


def test_load_refuses_a_different_base(tiny_encoder, tmp_path):
    fitted = get_route("encoder_ft").fit(
        _examples(2), _examples(1), _params(tiny_encoder, max_epochs=1), _ctx(tiny_encoder)
    )
    fitted.save(tmp_path / "v")
    meta_path = tmp_path / "v" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["fingerprint"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BackboneError, match="fingerprint"):
        get_route("encoder_ft").load(tmp_path / "v", LoadContext(model_root=tiny_encoder.path))


def test_length_batches_cover_every_text_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = length_batches(lengths, 32, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.1 * lengths.sum()


def test_a_checkpoint_resumes_the_run(tiny_encoder, tmp_path):
    """A second run with the same parameters and data picks up the saved epochs instead of training again;
    other parameters start afresh."""
    route, train, val = get_route("encoder_ft"), _examples(4), _examples(1)
    params = _params(tiny_encoder, max_epochs=2, patience=5, tfidf_ensemble=False)
    first = route.fit(train, val, params, _ctx(tiny_encoder, checkpoint_dir=tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / CHECKPOINT_FILE).is_file() and holds_checkpoint(tmp_path / "ckpt")

    def steps_taken(run_params) -> tuple[int, dict]:
        events = []
        ctx = _ctx(tiny_encoder, checkpoint_dir=tmp_path / "ckpt", progress=events.append)
        fitted = route.fit(train, val, run_params, ctx)
        return sum("step" in e.message for e in events), fitted.meta

    resumed_steps, resumed = steps_taken(params)
    assert resumed_steps == 0
    assert resumed["history"] == first.meta["history"] and resumed["steps"] == first.meta["steps"]
    fresh_steps, _ = steps_taken(_params(tiny_encoder, max_epochs=2, patience=5, tfidf_ensemble=False, lr=1e-3))
    assert fresh_steps == first.meta["steps"]


def _batch(tiny_encoder):
    from modeling.engine.backbones.features import load_tokenizer

    tokenizer = load_tokenizer(tiny_encoder.path)
    texts = _examples(1).texts
    ids = tokenizer(texts, truncation=True, max_length=32)["input_ids"]
    return collate(ids, np.arange(len(texts)), tokenizer.pad_token_id)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_training_forward_matches_transformers_and_its_gradients(tiny_encoder, mode):
    """The fused training forward computes transformers' function, and gives the same gradients."""
    torch.manual_seed(0)
    model = build_trainable(tiny_encoder.path, TrainableSpec(mode=mode, lora_dropout=0.0, bf16=False), len(KEYS))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    input_ids, mask = _batch(tiny_encoder)
    assert not bool(mask.all())  # padding is part of what is compared
    model.train()
    ours = model.pooled(input_ids, mask)
    hidden = model.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    reference = (hidden * m).sum(1) / m.sum(1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
    params = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("head.")]
    weights = torch.randn_like(ours)
    ours_grads = torch.autograd.grad((ours * weights).sum(), params)
    reference_grads = torch.autograd.grad((reference * weights).sum(), params)
    for got, want in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-3)


def test_lora_dropout_is_active_in_training_only(tiny_encoder):
    torch.manual_seed(0)
    model = build_trainable(tiny_encoder.path, TrainableSpec(mode="lora", lora_dropout=0.3, bf16=False), 4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    input_ids, mask = _batch(tiny_encoder)
    model.eval()
    first, second = model.pooled(input_ids, mask), model.pooled(input_ids, mask)
    torch.testing.assert_close(first, second)
    model.train()
    assert (model.pooled(input_ids, mask) - first).abs().max() > 1e-3


def test_dropout_mask_keeps_the_share_and_the_mean():
    from modeling.engine.routes.finetune import dropout_mask

    torch.manual_seed(0)
    mask = dropout_mask((1000, 500), 0.05, torch.float32)
    kept = (mask > 0).float().mean().item()
    assert abs(kept - 0.95) < 0.002
    assert abs(mask.mean().item() - 1.0) < 0.003
    assert torch.unique(mask).tolist() == [0.0, pytest.approx(1 / 0.95, rel=1e-4)]
