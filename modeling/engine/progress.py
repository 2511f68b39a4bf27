"""The one progress shape of every engine stage (packs, extraction, fitting, calibration)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report, the same shape for every stage (packs, extraction, fitting, calibration)."""

    stage: str  # e.g. "pack", "extract", "fit", "calibrate"
    fraction: float  # 0..1 of this stage
    eta_seconds: float | None = None  # remaining time of this stage, when it can be estimated
    message: str = ""


ProgressFn = Callable[[ProgressEvent], None]


class StageProgress:
    """Turns "done k of n" into ProgressEvents with an ETA from the elapsed time of this stage."""

    def __init__(self, stage: str, report: ProgressFn | None) -> None:
        self.stage, self.report, self.started = stage, report, time.monotonic()
        self.base = 0.0  # the fraction done before this process started (a resumed run)

    def resumed_at(self, fraction: float) -> None:
        """The stage resumes with `fraction` already done: the ETA counts only the rate of this process."""
        self.base, self.started = min(max(float(fraction), 0.0), 1.0), time.monotonic()

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.report is None:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        elapsed = time.monotonic() - self.started
        done = fraction - self.base
        eta = elapsed * (1.0 - fraction) / done if done > 0 else None
        self.report(ProgressEvent(self.stage, fraction, eta, message))
