"""Incremental retraining in the engine: warm starts of the fine-tuned routes (tiny random backbones), the replay
selection, and the forgetting report."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling.engine.data.replay import incremental_selection, new_and_old, replay_sample
from modeling.engine.evaluation.forgetting import forgetting_report
from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import Examples, FitContext, Taxonomy
from modeling.engine.routes.encoder_ft import HEAD_FILE, WEIGHTS_FILE
from modeling.engine.routes.warm_start import WarmStartError, grown_head
from modeling.engine.versions import train_version
from tests.engine.tiny import make_tiny_backbone

OLD_KEYS = ["refund", "account", "其他"]
NEW_KEYS = ["refund", "ship", "account", "其他"]  # a label added, and the order changed
TEXTS = {
    "refund": ["退款 怎么 办", "我要 退货 退款", "退款 还没 到账", "申请 退款"],
    "account": ["密码 忘了", "登录 不了 账户", "账户 被 锁", "改 密码"],
    "ship": ["物流 太慢", "快递 没到", "包裹 丢了", "物流 信息 不动"],
    "其他": ["你好", "今天 天气", "谢谢", "在吗"],
}


def _examples(keys: list[str], repeat: int = 1) -> Examples:
    pairs = [(t, k) for _ in range(repeat) for k in keys for t in TEXTS[k]]
    return Examples([t for t, _ in pairs], [k for _, k in pairs])


def _ctx(keys: list[str], root, **kwargs) -> FitContext:
    return FitContext(label_keys=keys, taxonomy=Taxonomy.from_keys(keys, "其他"), model_root=root, **kwargs)


def _encoder_params(tiny, **kwargs):
    base = {"backbone": tiny.path, "precision": "fp32", "max_epochs": 2, "batch_size": 8, "tfidf_ensemble": False}
    return parse_params("encoder_ft", {**base, **kwargs})


@pytest.fixture(scope="module")
def previous_encoder(tiny_encoder, tmp_path_factory):
    """A trained encoder_ft route folder over OLD_KEYS (the previous version)."""
    folder = tmp_path_factory.mktemp("previous") / "route"
    fitted = get_route("encoder_ft").fit(
        _examples(OLD_KEYS, 3),
        _examples(OLD_KEYS),
        _encoder_params(tiny_encoder, lr=5e-3),
        _ctx(OLD_KEYS, tiny_encoder.path),
    )
    fitted.save(folder)
    return folder


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_encoder_ft_continues_from_the_previous_weights_with_a_grown_label_set(tiny_encoder, tmp_path, mode):
    previous = tmp_path / "previous"
    get_route("encoder_ft").fit(
        _examples(OLD_KEYS, 2), _examples(OLD_KEYS), _encoder_params(tiny_encoder, mode=mode, lr=5e-3, max_epochs=1),
        _ctx(OLD_KEYS, tiny_encoder.path),
    ).save(previous)  # fmt: skip
    # A learning rate of ~0 keeps what was loaded, so the test sees the starting point itself.
    still = _encoder_params(tiny_encoder, mode=mode, lr=1e-9, head_lr=1e-9, max_epochs=1, weight_decay=0.0)
    fitted = get_route("encoder_ft").fit(
        _examples(NEW_KEYS), _examples(NEW_KEYS), still, _ctx(NEW_KEYS, tiny_encoder.path, warm_start=previous)
    )
    old_weights = load_file(str(previous / WEIGHTS_FILE))
    assert set(fitted.changed) == set(old_weights)
    for name, tensor in old_weights.items():
        torch.testing.assert_close(fitted.changed[name], tensor, atol=1e-5, rtol=0)
    old_head = load_file(str(previous / HEAD_FILE))
    for key in ("refund", "account", "其他"):
        new_row, old_row = NEW_KEYS.index(key), OLD_KEYS.index(key)
        np.testing.assert_allclose(fitted.head_weight[new_row], old_head["weight"][old_row].numpy(), atol=1e-5)
        np.testing.assert_allclose(fitted.head_bias[new_row], old_head["bias"][old_row].numpy(), atol=1e-5)
    assert fitted.head_weight.shape[0] == len(NEW_KEYS) and np.abs(fitted.head_weight[1]).sum() > 0
    report = fitted.describe()["warm_start"]
    assert report["used"] and report["new_labels"] == ["ship"] and report["dropped_labels"] == []
    assert sorted(report["kept_labels"]) == ["account", "refund", "其他"]


def test_a_cold_fit_differs_from_the_warm_start(tiny_encoder, previous_encoder):
    still = _encoder_params(tiny_encoder, lr=1e-9, head_lr=1e-9, max_epochs=1, weight_decay=0.0)
    cold = get_route("encoder_ft").fit(
        _examples(NEW_KEYS), _examples(NEW_KEYS), still, _ctx(NEW_KEYS, tiny_encoder.path)
    )
    old = load_file(str(previous_encoder / WEIGHTS_FILE))
    assert any(not torch.allclose(cold.changed[n], t, atol=1e-5) for n, t in old.items())
    assert cold.describe()["warm_start"] is None


def test_another_backbone_starts_cold_and_says_so(previous_encoder, tmp_path):
    other = make_tiny_backbone(tmp_path / "other-encoder", kind="encoder", seed=7)
    fitted = get_route("encoder_ft").fit(
        _examples(NEW_KEYS), _examples(NEW_KEYS), _encoder_params(other, max_epochs=1),
        _ctx(NEW_KEYS, other.path, warm_start=previous_encoder),
    )  # fmt: skip
    report = fitted.describe()["warm_start"]
    assert report["used"] is False and report["reason"].startswith("cold start: ")
    assert other.fingerprint[:12] in report["reason"]


def test_another_lora_rank_starts_cold(tiny_encoder, previous_encoder):
    fitted = get_route("encoder_ft").fit(
        _examples(NEW_KEYS), _examples(NEW_KEYS), _encoder_params(tiny_encoder, lora_r=4, max_epochs=1),
        _ctx(NEW_KEYS, tiny_encoder.path, warm_start=previous_encoder),
    )  # fmt: skip
    assert fitted.describe()["warm_start"]["used"] is False and "lora_r" in fitted.describe()["warm_start"]["reason"]


def test_a_folder_of_another_route_is_an_error(tiny_encoder, tmp_path):
    (tmp_path / "route.json").write_text('{"route": "lora"}')
    with pytest.raises(WarmStartError, match="holds no encoder_ft model"):
        get_route("encoder_ft").fit(
            _examples(NEW_KEYS), _examples(NEW_KEYS), _encoder_params(tiny_encoder, max_epochs=1),
            _ctx(NEW_KEYS, tiny_encoder.path, warm_start=tmp_path),
        )  # fmt: skip


def test_train_version_records_the_warm_start(tiny_encoder, previous_encoder):
    version = train_version(
        "encoder_ft", _encoder_params(tiny_encoder, max_epochs=1), _examples(NEW_KEYS, 2), _examples(NEW_KEYS, 2),
        _ctx(NEW_KEYS, tiny_encoder.path, warm_start=previous_encoder),
    )  # fmt: skip
    assert version.metrics["warm_start"]["used"] and version.metrics["warm_start"]["new_labels"] == ["ship"]


def test_grown_head_maps_new_rows_onto_the_old_scale():
    old = (np.array([[3.0, 0.0], [0.0, 3.0]]), np.array([1.0, 1.0]))
    fresh = (np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([0.0, 0.0, 0.5]))
    weight, bias = grown_head(old, fresh, kept=[(0, 1), (1, 0)])
    np.testing.assert_allclose(weight[:2], [[0.0, 3.0], [3.0, 0.0]])
    np.testing.assert_allclose(weight[2], [3.0, 3.0])  # three times the fresh row: old rows are 3x as long
    assert bias[2] == pytest.approx(3 * 0.5 + 1.0)


def _decoder_params(route: str, tiny, **kwargs):
    base = {"backbone": tiny.path, "dtype": "fp32", "batch_size": 2, "epochs": 1.0, "label_tokens": "on"}
    return parse_params(route, {**base, **kwargs})


@pytest.mark.parametrize("route", ["lora", "prefix"])
def test_decoder_routes_continue_from_the_previous_adapter(route, tiny_decoder, tmp_path):
    from peft import get_peft_model_state_dict

    previous = tmp_path / "previous"
    old = get_route(route).fit(
        _examples(OLD_KEYS), _examples(OLD_KEYS), _decoder_params(route, tiny_decoder, lr=1e-2), _ctx(OLD_KEYS, None)
    )
    old.save(previous)
    old_adapter = {k: v.detach().clone() for k, v in get_peft_model_state_dict(old.model).items()}
    old_tokens = old.scorer.label_head.detach().clone()
    still = _decoder_params(route, tiny_decoder, lr=1e-12, epochs=0.01)
    new = get_route(route).fit(
        _examples(NEW_KEYS), _examples(NEW_KEYS), still, _ctx(NEW_KEYS, None, warm_start=previous)
    )
    for name, tensor in get_peft_model_state_dict(new.model).items():
        torch.testing.assert_close(tensor, old_adapter[name], atol=1e-6, rtol=0)
    tokens = new.scorer.label_head.detach()
    for key in ("refund", "account", "其他"):
        torch.testing.assert_close(tokens[NEW_KEYS.index(key)], old_tokens[OLD_KEYS.index(key)], atol=1e-6, rtol=0)
    report = new.describe()["warm_start"]
    assert report["used"] and report["new_labels"] == ["ship"]


def test_decoder_on_another_backbone_starts_cold(tiny_decoder, tmp_path):
    previous = tmp_path / "previous"
    get_route("lora").fit(
        _examples(OLD_KEYS),
        _examples(OLD_KEYS),
        _decoder_params("lora", tiny_decoder, epochs=0.01),
        _ctx(OLD_KEYS, None),
    ).save(previous)
    other = make_tiny_backbone(tmp_path / "other-decoder", kind="decoder", seed=3)
    new = get_route("lora").fit(
        _examples(NEW_KEYS), _examples(NEW_KEYS), _decoder_params("lora", other, epochs=0.01),
        _ctx(NEW_KEYS, None, warm_start=previous),
    )  # fmt: skip
    assert new.describe()["warm_start"]["used"] is False


# ---------------------------------------------------------------------------------------------- replay


def _gold(n_per_label: dict[str, int], start: int = 1) -> tuple[list[int], list[str]]:
    labels = [label for label, n in n_per_label.items() for _ in range(n)]
    return list(range(start, start + len(labels))), labels


def test_new_items_are_unseen_or_relabelled():
    ids, labels = [1, 2, 3, 4], ["a", "b", "a", "c"]
    new, old = new_and_old(ids, labels, previous=[[1, "a"], [2, "a"], [3, "a"]])
    assert new.tolist() == [1, 3] and old.tolist() == [0, 2]


def test_replay_share_is_stratified_by_label_with_a_floor():
    ids, labels = _gold({"big": 100, "mid": 20, "rare": 2})
    picked = replay_sample(ids, labels, share=0.25, seed=0)
    counts = Counter(labels[i] for i in picked)
    assert counts == {"big": 25, "mid": 5, "rare": 1}
    assert replay_sample(ids, labels, share=0.0, seed=0).size == 0
    assert sorted(replay_sample(ids, labels, share=1.0, seed=0).tolist()) == list(range(len(ids)))


def test_replay_is_deterministic_by_seed_and_independent_of_order():
    ids, labels = _gold({"a": 50, "b": 30})
    first = replay_sample(ids, labels, 0.2, seed=1)
    assert first.tolist() == replay_sample(ids, labels, 0.2, seed=1).tolist()
    assert first.tolist() != replay_sample(ids, labels, 0.2, seed=2).tolist()
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = replay_sample([ids[i] for i in order], [labels[i] for i in order], 0.2, seed=1)
    assert sorted(ids[order[i]] for i in shuffled) == sorted(ids[i] for i in first)


def test_incremental_selection_is_new_plus_replay_and_reports_counts():
    ids, labels = _gold({"a": 40, "b": 10, "c": 6})
    previous = [[i, label] for i, label in zip(ids, labels, strict=True) if label != "c"]
    selection = incremental_selection(ids, labels, previous, share=0.1, seed=0)
    assert sorted(labels[i] for i in selection.new) == ["c"] * 6
    assert Counter(labels[i] for i in selection.replay) == {"a": 4, "b": 1}
    assert selection.report["n_new"] == 6 and selection.report["n_replay"] == 5 and selection.report["n_old"] == 50
    assert selection.report["labels_new_since_previous"] == ["c"]
    assert len(selection.train) == 11 and set(selection.train) == set(selection.new) | set(selection.replay)


def test_replay_share_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="between 0 and 1"):
        replay_sample([1], ["a"], 1.5, seed=0)


# ---------------------------------------------------------------------------------------------- forgetting


class _Fixed:
    """A predictor that answers from a table (the forgetting report only needs score().probs)."""

    def __init__(self, keys: list[str], answers: dict[str, str]) -> None:
        self.label_keys, self.answers = keys, answers

    def score(self, texts):
        probs = np.zeros((len(texts), len(self.label_keys)))
        for row, text in enumerate(texts):
            probs[row, self.label_keys.index(self.answers[text])] = 1.0
        return type("Scored", (), {"probs": probs})()


def test_forgetting_compares_both_versions_on_the_old_split():
    old_val = Examples(["r1", "r2", "a1", "a2", "s1"], ["refund", "refund", "account", "account", "ship"])
    before = _Fixed(OLD_KEYS, {"r1": "refund", "r2": "refund", "a1": "account", "a2": "account"})
    after = _Fixed(NEW_KEYS, {"r1": "refund", "r2": "ship", "a1": "account", "a2": "account", "s1": "ship"})
    report = forgetting_report(before, after, old_val)
    assert report["n"] == 4  # "ship" is unknown to the previous version
    assert report["old_val_macro_f1_before"] == 1.0
    assert report["delta"] == pytest.approx(report["old_val_macro_f1_after"] - 1.0) and report["delta"] < 0
