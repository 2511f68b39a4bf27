"""Continuing a fine-tuned route from a previous version's route folder (incremental retraining).

A fit whose ``ctx.warm_start`` names the previous version's ``route/`` folder starts from that version's
trained weights instead of the base pack's: the LoRA adapter or fine-tuned encoder weights (``encoder_ft``),
the peft adapter (``lora``, ``prefix``), and the output rows (head, label tokens) of every label both versions
know. A label the previous version did not have gets the row a cold fit would give it; a label that is gone
loses its row.

A previous version that cannot be continued — another backbone (its fingerprint differs) or an adapter of
another shape (rank, targets, virtual tokens) — is not an error: the fit starts cold and its report says why,
so an automatic retrain after a backbone change still produces a version. A folder that holds no model of the
route is an error (``WarmStartError``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class WarmStartError(ValueError):
    """The warm-start folder holds no model of this route."""


@dataclass
class WarmStartReport:
    source: str
    used: bool
    reason: str = ""
    kept_labels: list[str] = field(default_factory=list)
    new_labels: list[str] = field(default_factory=list)
    dropped_labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cold(folder: Path, reason: str) -> WarmStartReport:
    return WarmStartReport(source=str(folder), used=False, reason=f"cold start: {reason}")


def read_json_record(folder: Path, name: str, route: str) -> dict[str, Any]:
    try:
        record = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError) as exc:
        raise WarmStartError(f"warm start: {folder} holds no {route} model ({exc})") from None
    if record.get("route") != route:
        raise WarmStartError(f"warm start: {folder} holds a {record.get('route')!r} model, not {route!r}")
    return record


def label_mapping(old_keys: list[str], new_keys: list[str]) -> tuple[list[tuple[int, int]], list[str], list[str]]:
    """(new row, old row) pairs of the labels both sets hold, the labels only the new set has, the dropped ones."""
    old_index = {key: i for i, key in enumerate(old_keys)}
    kept = [(i, old_index[key]) for i, key in enumerate(new_keys) if key in old_index]
    added = [key for key in new_keys if key not in old_index]
    dropped = [key for key in old_keys if key not in set(new_keys)]
    return kept, added, dropped


def report_labels(report: WarmStartReport, old_keys: list[str], new_keys: list[str]) -> list[tuple[int, int]]:
    kept, report.new_labels, report.dropped_labels = label_mapping(old_keys, new_keys)
    report.kept_labels = [new_keys[i] for i, _ in kept]
    return kept


def grown_head(
    old: tuple[np.ndarray, np.ndarray], fresh: tuple[np.ndarray, np.ndarray], kept: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """The head over the new label set: the old rows of kept labels as they were; rows of new labels from the
    fresh (cold-start) head, mapped onto the old head's logit scale (row norms, bias level) so a new label
    neither dominates nor vanishes at the first step."""
    (old_w, old_b), (fresh_w, fresh_b) = old, fresh
    weight, bias = fresh_w.astype(np.float32).copy(), fresh_b.astype(np.float32).copy()
    if not kept:
        return weight, bias
    new_rows, old_rows = (np.array(side) for side in zip(*kept, strict=True))
    scale = float(
        np.linalg.norm(old_w[old_rows], axis=1).mean() / max(np.linalg.norm(fresh_w[new_rows], axis=1).mean(), 1e-12)
    )
    added = np.setdiff1d(np.arange(len(weight)), new_rows)
    weight[added] = scale * fresh_w[added]
    bias[added] = scale * (fresh_b[added] - fresh_b[new_rows].mean()) + old_b[old_rows].mean()
    weight[new_rows], bias[new_rows] = old_w[old_rows], old_b[old_rows]
    return weight, bias


def grown_rows(old: np.ndarray, fresh: np.ndarray, kept: list[tuple[int, int]]) -> np.ndarray:
    """Rows over the new label set: old rows for kept labels, the fresh initialisation for new ones."""
    out = fresh.copy()
    for new_row, old_row in kept:
        out[new_row] = old[old_row]
    return out


# ------------------------------------------------------------------------------------------- encoder_ft


@dataclass
class EncoderWarmStart:
    """What ``encoder_ft`` continues from: the previous version's changed encoder weights and its head."""

    report: WarmStartReport
    changed: dict[str, Any] = field(default_factory=dict)
    head: tuple[np.ndarray, np.ndarray] | None = None
    old_keys: list[str] = field(default_factory=list)
    mode: str = "lora"

    def load_encoder(self, model) -> None:
        """Put the previous version's adapter (or fine-tuned weights) into the freshly built trainable model."""
        if not self.report.used:
            return
        import torch

        if self.mode == "lora":
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(model.encoder, self.changed)
            if result.unexpected_keys:
                raise WarmStartError(f"warm start: adapter weights do not fit: {result.unexpected_keys[:3]}")
        else:
            with torch.no_grad():
                model.encoder.load_state_dict(self.changed, strict=False)

    def load_head(self, model, keys: list[str]) -> None:
        """Old label rows kept, new label rows from the head the cold start gave (probe or random)."""
        if not self.report.used or self.head is None:
            return
        import torch

        kept = report_labels(self.report, self.old_keys, keys)
        fresh = (model.head.weight.detach().float().numpy(), model.head.bias.detach().float().numpy())
        weight, bias = grown_head(self.head, fresh, kept)
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(weight))
            model.head.bias.copy_(torch.from_numpy(bias))


def encoder_warm_start(folder: Path, spec: Any, params: Any) -> EncoderWarmStart:
    """Read a previous ``encoder_ft`` route folder; a cold-start report when it cannot be continued."""
    from safetensors.torch import load_file

    from modeling.engine.routes import encoder_ft as ft

    folder = Path(folder)
    meta = read_json_record(folder, ft.META_FILE, "encoder_ft")
    if meta.get("fingerprint") != spec.fingerprint:
        reason = (
            f"the previous version was fine-tuned from {meta.get('backbone')} ({str(meta.get('fingerprint'))[:12]}), "
            f"this run uses {spec.name} ({spec.fingerprint[:12]})"
        )
        return EncoderWarmStart(cold(folder, reason))
    old = meta.get("params", {})
    for key in ("mode", "lora_r") if params.mode == "lora" else ("mode",):
        if old.get(key) != getattr(params, key):
            return EncoderWarmStart(
                cold(folder, f"the previous version has {key}={old.get(key)}, this run {getattr(params, key)}")
            )
    head = load_file(str(folder / ft.HEAD_FILE))
    return EncoderWarmStart(
        WarmStartReport(source=str(folder), used=True),
        changed=load_file(str(folder / ft.WEIGHTS_FILE)),
        head=(head["weight"].float().numpy(), head["bias"].float().numpy()),
        old_keys=list(meta["label_keys"]),
        mode=params.mode,
    )


# ------------------------------------------------------------------------------------------- lora / prefix


def decoder_warm_start(
    folder: Path, route: str, spec: Any, model, label_head, label_keys: list[str]
) -> WarmStartReport:
    """Load a previous ``lora`` / ``prefix`` adapter (and its label-token rows) into a freshly wrapped model."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    from modeling.engine.routes import adapted_decoder as ad

    folder = Path(folder)
    record = read_json_record(folder, ad.ROUTE_FILE, route)
    if record.get("fingerprint") != spec.fingerprint:
        reason = (
            f"the previous version was trained on {record.get('backbone')} ({str(record.get('fingerprint'))[:12]}), "
            f"this run uses {spec.name} ({spec.fingerprint[:12]})"
        )
        return cold(folder, reason)
    weights = folder / ad.ADAPTER_DIR / "adapter_model.safetensors"
    if not weights.is_file():
        raise WarmStartError(f"warm start: {folder} has no adapter weights")
    saved = load_file(str(weights))
    expected = {name: tuple(t.shape) for name, t in get_peft_model_state_dict(model).items()}
    shapes = {name: tuple(t.shape) for name, t in saved.items()}
    if shapes != expected:
        return cold(folder, "the previous adapter has another shape (rank, targets or virtual tokens differ)")
    set_peft_model_state_dict(model, saved)
    report = WarmStartReport(source=str(folder), used=True)
    kept = report_labels(report, list(record["label_keys"]), list(label_keys))
    old_head = ad.load_label_head(folder)
    if label_head is not None and old_head is not None:
        with torch.no_grad():
            grown = grown_rows(old_head.detach().float().numpy(), label_head.detach().float().numpy(), kept)
            label_head.copy_(torch.from_numpy(grown))
    return report
