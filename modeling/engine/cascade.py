"""The cascade: a second version re-scores the texts the primary version is unsure of.

A text whose calibrated top probability is below ``tau`` goes to the re-check version (a decoder route), as
long as the share cap allows; the two calibrated distributions are combined by a rule, and the primary's own
abstention rule (threshold and out-of-scope score) decides on the combined distribution, so what is still
uncertain abstains to the fallback label as before. Plain numpy; no Django."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modeling.engine.evaluation.calibration import BELOW_THRESHOLD, RECHECK_DISAGREED
from modeling.engine.versions import Prediction, Predictor

PRODUCT = "product"
RECHECK_ONLY = "recheck_only"
MORE_CONFIDENT = "more_confident"
# The product keeps both models' evidence; `evaluate_dataset --cascade` measures every rule side by side.
DEFAULT_RULE = PRODUCT
# A label the re-check version does not know gets this probability there, so the product keeps the primary's
# ranking among such labels instead of zeroing them all.
_FLOOR = 1e-6


def product(primary: np.ndarray, recheck: np.ndarray) -> np.ndarray:
    """Both models' evidence: the product of the two calibrated distributions, renormalised."""
    joint = np.maximum(primary, _FLOOR) * np.maximum(recheck, _FLOOR)
    return joint / joint.sum(axis=1, keepdims=True)


def recheck_only(primary: np.ndarray, recheck: np.ndarray) -> np.ndarray:
    """The re-check version's distribution replaces the primary's."""
    return np.asarray(recheck, dtype=np.float64).copy()


def more_confident(primary: np.ndarray, recheck: np.ndarray) -> np.ndarray:
    """Per text, the distribution of whichever model is more confident in its own top label."""
    take_recheck = recheck.max(axis=1) > primary.max(axis=1)
    return np.where(take_recheck[:, None], recheck, primary).astype(np.float64)


COMBINE_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    PRODUCT: product,
    RECHECK_ONLY: recheck_only,
    MORE_CONFIDENT: more_confident,
}


def combine(rule: str, primary: np.ndarray, recheck: np.ndarray) -> np.ndarray:
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {rule!r}; choose one of {', '.join(COMBINE_RULES)}")
    primary, recheck = np.asarray(primary, dtype=np.float64), np.asarray(recheck, dtype=np.float64)
    if primary.shape != recheck.shape:
        raise ValueError(f"distributions differ in shape: {primary.shape} and {recheck.shape}")
    return COMBINE_RULES[rule](primary, recheck)


def align(probs: np.ndarray, from_keys: Sequence[str], to_keys: Sequence[str]) -> np.ndarray:
    """Columns of ``probs`` (in ``from_keys`` order) re-ordered to ``to_keys``; a key it lacks gets 0."""
    probs = np.asarray(probs, dtype=np.float64)
    out = np.zeros((len(probs), len(to_keys)), dtype=np.float64)
    where = {key: j for j, key in enumerate(from_keys)}
    for j, key in enumerate(to_keys):
        if key in where:
            out[:, j] = probs[:, where[key]]
    return out


def compatible(primary_keys: Sequence[str], recheck_keys: Sequence[str]) -> list[str]:
    """The re-check version's labels the primary does not have (empty when the pair can be combined)."""
    known = set(primary_keys)
    return [key for key in recheck_keys if key not in known]


def below(probs: np.ndarray, tau: float) -> np.ndarray:
    """Texts whose calibrated top probability is under ``tau``: the ones to re-check."""
    return np.asarray(probs).max(axis=1) < tau


class ShareCap:
    """At most ``max_share`` of the texts seen in the last ``window_seconds`` are re-checked (per process).

    Every text counts, re-checked or not. One re-check per window is always allowed, so a quiet project is
    not starved by having seen few texts."""

    def __init__(self, max_share: float, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= max_share <= 1.0:
            raise ValueError("max_share must be between 0 and 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.max_share, self.window_seconds, self.clock = float(max_share), float(window_seconds), clock
        self._seen: deque[tuple[float, bool]] = deque()
        self._rechecked = 0
        self._lock = threading.Lock()

    def admit(self, wanted: Sequence[bool]) -> list[bool]:
        """Records one request's texts; returns which of the wanted re-checks may run."""
        with self._lock:
            now = self.clock()
            self._forget_before(now - self.window_seconds)
            admitted = []
            for want in wanted:
                allow = bool(want) and self._room(len(self._seen) + 1)
                self._seen.append((now, allow))
                self._rechecked += allow
                admitted.append(allow)
            return admitted

    def share(self) -> float:
        with self._lock:
            self._forget_before(self.clock() - self.window_seconds)
            return self._rechecked / len(self._seen) if self._seen else 0.0

    def _room(self, total: int) -> bool:
        if self.max_share <= 0.0:
            return False
        return self._rechecked + 1 <= max(1.0, self.max_share * total)

    def _forget_before(self, start: float) -> None:
        while self._seen and self._seen[0][0] < start:
            _, was_rechecked = self._seen.popleft()
            self._rechecked -= was_rechecked


@dataclass
class StageAnswer:
    """What one stage thought of one text: its own top label and calibrated probability."""

    label: str
    confidence: float


@dataclass
class CascadeResult:
    predictions: list[Prediction]  # the final answers, in input order
    primary: list[StageAnswer]
    recheck: list[StageAnswer | None]  # None where the text was not re-checked
    wanted: list[bool]  # below tau (whether or not the cap let it through)
    primary_seconds: float
    recheck_seconds: float = 0.0

    @property
    def rechecked(self) -> list[bool]:
        return [answer is not None for answer in self.recheck]


def run_cascade(
    primary: Predictor,
    recheck: Predictor,
    texts: Sequence[str],
    *,
    tau: float,
    rule: str = DEFAULT_RULE,
    admit: Callable[[list[bool]], list[bool]] | None = None,
    k: int = 3,
    explain: bool = False,
) -> CascadeResult:
    """The primary scores every text; texts under ``tau`` that ``admit`` lets through are re-scored by
    ``recheck`` and answered from the combined distribution under the primary's abstention rule."""
    texts = list(texts)
    started = time.perf_counter()
    predictions, scored = primary.predict_scored(texts, k=k, explain=explain)
    primary_seconds = time.perf_counter() - started
    answers = [StageAnswer(p.top_label, float(p.top_confidence)) for p in predictions]
    if not texts:
        return CascadeResult([], [], [], [], 0.0)
    wanted = below(scored.probs, tau).tolist()
    chosen = (admit or (lambda w: list(w)))(wanted)
    index = [i for i, ok in enumerate(chosen) if ok]
    result = CascadeResult(predictions, answers, [None] * len(texts), wanted, primary_seconds)
    if not index:
        return result
    started = time.perf_counter()
    second = recheck.score([texts[i] for i in index]).probs
    result.recheck_seconds = time.perf_counter() - started
    aligned = align(second, recheck.label_keys, primary.label_keys)
    combined = combine(rule, scored.probs[index], aligned)
    ood = None if scored.ood_scores is None else scored.ood_scores[index]
    final = primary.answers(combined, ood, k)
    for row, i in enumerate(index):
        top = int(np.argmax(second[row]))
        result.recheck[i] = StageAnswer(recheck.label_keys[top], round(float(second[row, top]), 6))
        final[row].neighbours = predictions[i].neighbours
        if final[row].abstain_reason == BELOW_THRESHOLD and recheck.label_keys[top] != answers[i].label:
            final[row].abstain_reason = RECHECK_DISAGREED
        predictions[i] = final[row]
    _add_missing_neighbours(primary, scored.features, predictions, index, k)
    return result


def _add_missing_neighbours(
    primary: Predictor, features: np.ndarray | None, predictions: list[Prediction], index: list[int], k: int
) -> None:
    """A text the primary answered but the cascade abstained on still shows reviewers its nearest examples."""
    missing = [i for i in index if predictions[i].abstained and not predictions[i].neighbours]
    if missing and primary.explain is not None and features is not None:
        for i, near in zip(missing, primary.explain.nearest(features[missing], k), strict=True):
            predictions[i].neighbours = near
