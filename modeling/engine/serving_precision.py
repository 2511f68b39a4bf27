"""Which precision a version serves with: INT8 only where it is both good enough and faster.

Two separate questions, answered at two moments:
- *May* the version serve in INT8? Decided once, at training, by the quality gate: the route's val texts
  scored again with INT8 features (same head, same temperature, same abstention rule) must keep macro-F1
  within `MAX_F1_DROP` of the reference precision and ECE within `MAX_ECE_RISE`. The verdict and its figures
  are written into the version (version.json), so a version that failed never serves in INT8.
- *Does* INT8 pay on this machine? Decided per process by a timing probe on the backbone's own layers,
  as bf16 is picked over fp32.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

MAX_F1_DROP = 0.005  # macro-F1, as a fraction (0.5 points)
MAX_ECE_RISE = 0.01
INT8 = "int8"
_PROBE_TOKENS = 2048
_PROBE_WIDTH = 16  # tokens of a typical feedback text
_probe_verdicts: dict[tuple[str, str, int], bool] = {}  # (backbone path, reference dtype, threads) -> faster
_probe_lock = threading.Lock()


@dataclass(frozen=True)
class GateResult:
    """The INT8 quality gate of one version, on its validation texts."""

    precision: str  # the candidate precision ("int8")
    reference: str  # the precision the version was trained and calibrated with ("bf16" / "fp32")
    passed: bool
    reference_macro_f1: float
    candidate_macro_f1: float
    reference_ece: float
    candidate_ece: float
    n_val: int
    reason: str | None = None  # why it failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        return cls(**data)


def quality_gate(reference: str, reference_metrics: dict, candidate_metrics: dict, n_val: int) -> GateResult:
    """Pass when the INT8 scores lose at most MAX_F1_DROP macro-F1 and gain at most MAX_ECE_RISE ECE."""
    f1_ref, f1_new = float(reference_metrics["macro_f1"]), float(candidate_metrics["macro_f1"])
    ece_ref = float(reference_metrics["calibration"]["ece"])
    ece_new = float(candidate_metrics["calibration"]["ece"])
    reasons = []
    if f1_ref - f1_new > MAX_F1_DROP:
        reasons.append(f"macro-F1 {f1_new:.4f} is more than {MAX_F1_DROP * 100:.1f} points below {f1_ref:.4f}")
    if ece_new - ece_ref > MAX_ECE_RISE:
        reasons.append(f"ECE {ece_new:.4f} is more than {MAX_ECE_RISE} above {ece_ref:.4f}")
    return GateResult(INT8, reference, not reasons, f1_ref, f1_new, ece_ref, ece_new, n_val, "; ".join(reasons) or None)


def int8_is_faster(extractor_path: str, reference_dtype: str, model_fp32, model_reference, threads: int) -> bool:
    """Time the backbone's blocks on a 2k-token batch in INT8 and in the reference dtype, once per process."""
    key = (extractor_path, reference_dtype, threads)
    with _probe_lock:
        if key not in _probe_verdicts:
            _probe_verdicts[key] = _time_int8_against(model_fp32, model_reference)
        return _probe_verdicts[key]


def _time_int8_against(model_fp32, model_reference) -> bool:
    """INT8 must win at both shapes serving meets, one text and a 2k-token batch (best of 3 after a warm-up)."""
    import torch

    from modeling.engine.backbones.fast_encoder import FastEncoder

    encoders = {"int8": FastEncoder(model_fp32, INT8), "reference": FastEncoder(model_reference)}
    generator = torch.Generator().manual_seed(0)
    vocab = int(model_fp32.config.vocab_size)
    shapes = [(1, _PROBE_WIDTH), (_PROBE_TOKENS // _PROBE_WIDTH, _PROBE_WIDTH)]
    batches = [torch.randint(5, vocab, shape, generator=generator) for shape in shapes]
    layers = min(2, len(encoders["int8"].blocks))
    wins = []
    for ids in batches:
        mask = torch.ones_like(ids)
        for encoder in encoders.values():
            encoder(ids, mask, layers)
        best = {name: float("inf") for name in encoders}
        for _ in range(3):
            for name, encoder in encoders.items():
                start = time.perf_counter()
                encoder(ids, mask, layers)
                best[name] = min(best[name], time.perf_counter() - start)
        wins.append(best["int8"] < best["reference"])
    return all(wins)
