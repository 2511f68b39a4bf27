"""Temperature scaling, expected calibration error and the abstention threshold.

All functions take plain numpy arrays: logits (n, C), probabilities (n, C), class indices (n,).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import f1_score, log_loss

ECE_BINS = 15
# precision: accuracy on answered texts >= target; coverage: share answered >= target; macro_f1: the tau that
# maximises validation macro-F1 when abstentions count as the fallback class; balanced: the tau maximising the mean
# of in-scope accuracy and fallback recall (for data whose fallback class is real out-of-scope text, such as
# CLINC150's "oos": a precision target answers too much there, and macro-F1 gives "oos" one vote in 151);
# in_scope_acc: the most fallback recall keeping in-scope accuracy (abstaining on an in-scope text is wrong)
# >= target, with one threshold on the out-of-scope score (choose_in_scope_accuracy_rule).
TARGET_KINDS = ("precision", "coverage", "macro_f1", "balanced", "in_scope_acc")
# Below this many validation predictions for a class, its own threshold is too noisy: use the global one.
MIN_CLASS_SUPPORT = 8
# Temperatures outside [e^-4, e^4] mean the logits are degenerate, not that the model needs that much scaling.
LOG_T_BOUNDS = (-4.0, 4.0)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return -float(logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the validation NLL of softmax(logits / T), searched on log T."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("temperature scaling needs at least one validation example")
    result = minimize_scalar(lambda log_t: nll(logits, y, math.exp(log_t)), bounds=LOG_T_BOUNDS, method="bounded")
    best = math.exp(float(result.x))
    # The bounded search never evaluates T=1 exactly; keep 1 if the search did not beat it.
    return best if nll(logits, y, best) < nll(logits, y, 1.0) else 1.0


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin: mean confidence, accuracy and count, plus the ECE they imply."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    # Bin i holds (i/n, (i+1)/n]; a confidence of exactly 0 (impossible for softmax) would land in bin 0.
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else None
        acc = float(correct[mask].mean()) if count else None
        if count:
            ece += count / len(y) * abs(acc - conf)
        bins.append(
            {"lower": b / n_bins, "upper": (b + 1) / n_bins, "confidence": conf, "accuracy": acc, "count": count}
        )
    return {"n_bins": n_bins, "bins": bins, "ece": float(ece)}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    return reliability_bins(probs, y, n_bins)["ece"]


def log_loss_of(probs: np.ndarray, y: np.ndarray) -> float:
    return float(log_loss(y, probs, labels=np.arange(probs.shape[1])))


# ---------------------------------------------------------------------------------------------- abstention


# Why a text was not answered with its top label (the predict response's ``abstain_reason``).
BELOW_THRESHOLD = "below_threshold"  # the calibrated top probability is under tau
OUT_OF_SCOPE = "out_of_scope"  # the out-of-scope score (distance to the training data) is over its threshold
RECHECK_DISAGREED = "recheck_disagreed"  # reserved: a second model disagreed with the first
LABEL_RETIRED = "label_retired"  # the top label no longer exists in the latest published taxonomy
ABSTAIN_REASONS = (BELOW_THRESHOLD, OUT_OF_SCOPE, RECHECK_DISAGREED, LABEL_RETIRED)
# When the owner's target cannot be reached on validation, tau answers at least this share of texts.
DEFAULT_COVERAGE_FLOOR = 0.8


@dataclass
class ThresholdChoice:
    """An abstention rule: answer when the top probability is >= the threshold of the predicted class and,
    when an out-of-scope score is in use, that score is <= ``ood_threshold``."""

    target_kind: str
    target: float
    threshold: float
    class_thresholds: dict[int, float] = field(default_factory=dict)
    target_met: bool = True
    val_coverage: float = 1.0
    val_selective_accuracy: float | None = None
    coverage_floor: float = DEFAULT_COVERAGE_FLOOR
    fallback_rule: str | None = None  # "coverage_floor" when the target was out of reach
    warning: str | None = None  # plain words for the model page when the rule is not what the owner asked for
    ood_kind: str | None = None
    ood_threshold: float | None = None

    def thresholds_for(self, predicted: np.ndarray) -> np.ndarray:
        taus = np.full(len(predicted), self.threshold, dtype=np.float64)
        for cls, tau in self.class_thresholds.items():
            taus[predicted == cls] = tau
        return taus

    def confident(self, probs: np.ndarray) -> np.ndarray:
        return probs.max(axis=1) >= self.thresholds_for(probs.argmax(axis=1))

    def in_scope(self, ood_scores: np.ndarray | None, n: int) -> np.ndarray:
        if self.ood_threshold is None or ood_scores is None:
            return np.ones(n, dtype=bool)
        return np.asarray(ood_scores) <= self.ood_threshold

    def answered(self, probs: np.ndarray, ood_scores: np.ndarray | None = None) -> np.ndarray:
        return self.confident(probs) & self.in_scope(ood_scores, len(probs))

    def reasons(self, probs: np.ndarray, ood_scores: np.ndarray | None = None) -> list[str | None]:
        """Per text: None when answered, else why (out of scope wins: it says more than low confidence)."""
        confident, in_scope = self.confident(probs), self.in_scope(ood_scores, len(probs))
        return [
            None if c and s else (OUT_OF_SCOPE if not s else BELOW_THRESHOLD)
            for c, s in zip(confident, in_scope, strict=True)
        ]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["class_thresholds"] = {str(k): v for k, v in self.class_thresholds.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ThresholdChoice:
        data = dict(data)
        data["class_thresholds"] = {int(k): float(v) for k, v in data.get("class_thresholds", {}).items()}
        return cls(**data)


def _threshold_for_target(confidence: np.ndarray, correct: np.ndarray, kind: str, target: float) -> tuple[float, bool]:
    """Smallest threshold (largest coverage) meeting the target; (threshold, met)."""
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, correct_sorted = confidence[order], correct[order].astype(np.float64)
    n = len(conf_sorted)
    # Answer everything with confidence >= tau: ties answer together, so only the last of each run of equal
    # confidences is a reachable cut.
    last_of_run = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    answered = np.arange(1, n + 1)
    if kind == "coverage":
        reachable = np.flatnonzero(last_of_run & (answered >= math.ceil(target * n - 1e-9)))
        return float(conf_sorted[reachable[0]]), True
    sel_acc = np.cumsum(correct_sorted) / answered
    ok = np.flatnonzero(last_of_run & (sel_acc >= target - 1e-12))
    if ok.size:
        return float(conf_sorted[ok[-1]]), True
    return float("nan"), False


def _macro_f1(y: np.ndarray, final: np.ndarray, fallback_index: int) -> float:
    return float(f1_score(y, final, average="macro", zero_division=0))


def _balanced_in_scope_and_fallback(y: np.ndarray, final: np.ndarray, fallback_index: int) -> float:
    """Mean of in-scope accuracy (abstaining on an in-scope text is wrong) and fallback recall."""
    in_scope = y != fallback_index
    parts = [float(np.mean(final[in_scope] == y[in_scope]))] if in_scope.any() else []
    if (~in_scope).any():
        parts.append(float(np.mean(final[~in_scope] == fallback_index)))
    return float(np.mean(parts))


def _best_threshold(
    confidence: np.ndarray,
    predicted: np.ndarray,
    y: np.ndarray,
    fallback_index: int,
    score: Callable[[np.ndarray, np.ndarray, int], float],
    max_candidates: int = 200,
) -> float:
    """The tau (among confidence quantiles) with the best score once abstentions become the fallback class;
    ties go to the smaller tau, which answers more."""
    candidates = np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, max_candidates)))
    best_tau, best_score = 0.0, -1.0
    for tau in np.r_[0.0, candidates]:
        value = score(y, np.where(confidence >= tau, predicted, fallback_index), fallback_index)
        if value > best_score + 1e-12:
            best_tau, best_score = float(tau), value
    return best_tau


def choose_threshold(
    probs: np.ndarray,
    y: np.ndarray,
    target_kind: str = "precision",
    target: float = 0.9,
    per_class: bool = False,
    min_class_support: int = MIN_CLASS_SUPPORT,
    fallback_index: int | None = None,
    coverage_floor: float = DEFAULT_COVERAGE_FLOOR,
) -> ThresholdChoice:
    """Pick the abstention threshold on validation probabilities.

    ``precision``: the smallest tau whose selective accuracy (accuracy on answered texts) is >= target, i.e.
    the largest coverage meeting it. ``coverage``: the largest tau still answering >= target of the texts.
    ``macro_f1``: the tau maximising validation macro-F1 with abstentions mapped to ``fallback_index``;
    ``balanced``: the tau maximising the mean of in-scope accuracy and fallback recall; ``in_scope_acc``:
    see ``choose_in_scope_accuracy_rule`` (here on the top probability alone).
    ``per_class`` adds a threshold per predicted class where that class has enough validation predictions.
    A target no threshold reaches (noisy validation labels) falls back to the tau answering ``coverage_floor``
    of the texts, and the choice says so in ``warning``: never a tau that silently abstains on everything.
    """
    if not 0.0 < coverage_floor <= 1.0:
        raise ValueError(f"the coverage floor must be in (0, 1], got {coverage_floor}")
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"abstention target kind must be one of {', '.join(TARGET_KINDS)}, got {target_kind!r}")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"abstention target must be in (0, 1], got {target}")
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if len(y) == 0:
        raise ValueError("choosing a threshold needs validation examples")
    if target_kind == "in_scope_acc":
        if fallback_index is None:
            raise ValueError("the in_scope_acc abstention target needs the fallback class")
        return choose_in_scope_accuracy_rule(probs, y, fallback_index, target, coverage_floor=coverage_floor)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == y
    if target_kind in {"macro_f1", "balanced"}:
        if fallback_index is None:
            raise ValueError(f"the {target_kind} abstention target needs the fallback class")
        score = _macro_f1 if target_kind == "macro_f1" else _balanced_in_scope_and_fallback
        tau, met = _best_threshold(confidence, predicted, y, fallback_index, score), True
        per_class = False  # one tau already optimises the whole-taxonomy metric
    else:
        tau, met = _threshold_for_target(confidence, correct, target_kind, target)
    fallback_rule = warning = None
    floor_tau, _ = _threshold_for_target(confidence, correct, "coverage", coverage_floor)
    # A precision target met only by answering a sliver of the texts (CIC: 0.6 %) is out of reach in practice.
    if target_kind == "precision" and (not met or tau > floor_tau):
        reach = f"it would answer only {(confidence >= tau).mean():.1%}" if met else "no threshold reaches it"
        tau, met, fallback_rule = floor_tau, False, "coverage_floor"
        floor_accuracy = float(correct[confidence >= floor_tau].mean())
        warning = (
            f"The abstention target (precision {target:g} on answered texts) cannot be reached while answering "
            f"at least {coverage_floor:.0%} of validation texts (the coverage floor): {reach}. The threshold "
            f"follows the floor instead: {coverage_floor:.0%} of texts are answered, {floor_accuracy:.1%} of "
            "them correctly on validation. Noisy validation labels or too few labelled texts are the usual cause; "
            "lower the target or the floor in the training parameters."
        )
    class_taus: dict[int, float] = {}
    if per_class:
        for cls in np.unique(predicted):
            mask = predicted == cls
            if mask.sum() >= min_class_support:
                class_tau, class_met = _threshold_for_target(confidence[mask], correct[mask], target_kind, target)
                # A class that cannot reach the target on its own keeps the global rule, not a worse one.
                if class_met:
                    class_taus[int(cls)] = class_tau
    choice = ThresholdChoice(
        target_kind,
        float(target),
        tau,
        class_taus,
        met,
        coverage_floor=coverage_floor,
        fallback_rule=fallback_rule,
        warning=warning,
    )
    answered = choice.answered(probs)
    choice.val_coverage = float(answered.mean())
    choice.val_selective_accuracy = float(correct[answered].mean()) if answered.any() else None
    return choice


def choose_in_scope_accuracy_rule(
    probs: np.ndarray,
    y: np.ndarray,
    fallback_index: int,
    target: float,
    ood_scores: np.ndarray | None = None,
    coverage_floor: float = DEFAULT_COVERAGE_FLOOR,
) -> ThresholdChoice:
    """The rule sending the most texts to the fallback while in-scope accuracy on validation stays >= target.

    One threshold on a rejection score: the out-of-scope score when given (tau stays 0: the calibrated top
    probability is already part of the combined score), else 1 - top probability (tau). Rejecting more can
    only lower in-scope accuracy and raise fallback recall, so the rule is the lowest threshold meeting the
    target. When even answering every text misses it (the argmax alone is below the target), every text is
    answered and the choice says so in ``warning``."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"abstention target must be in (0, 1], got {target}")
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    in_scope = y != fallback_index
    if not in_scope.any():
        raise ValueError("the in_scope_acc abstention target needs in-scope validation texts")
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    reject_score = -confidence if ood_scores is None else np.asarray(ood_scores, dtype=np.float64)
    # Answered when reject_score <= c: in-scope accuracy at c counts the correct in-scope texts scoring <= c.
    order = np.argsort(reject_score[in_scope], kind="stable")
    sorted_scores = reject_score[in_scope][order]
    correct_sorted = (predicted[in_scope] == y[in_scope])[order]
    accuracy = np.cumsum(correct_sorted) / in_scope.sum()
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    ok = np.flatnonzero(last_of_run & (accuracy >= target - 1e-12))
    met = bool(ok.size)
    cut = float(sorted_scores[ok[0]] if met else sorted_scores[-1])
    warning = None
    if not met:
        warning = (
            f"The abstention target (in-scope accuracy {target:g}) cannot be reached on validation even when every "
            f"text is answered: the classifier alone gets {accuracy[-1]:.1%} of in-scope texts right. Every text "
            "is answered; lower the target or label more texts."
        )
    threshold, ood_threshold = (0.0, cut) if ood_scores is not None else (-cut, None)
    choice = ThresholdChoice(
        "in_scope_acc",
        float(target),
        threshold,
        target_met=met,
        coverage_floor=coverage_floor,
        warning=warning,
        ood_threshold=ood_threshold,
    )
    answered = choice.answered(probs, ood_scores)
    choice.val_coverage = float(answered.mean())
    choice.val_selective_accuracy = float((predicted == y)[answered].mean()) if answered.any() else None
    return choice


def choose_ood_threshold(scores: np.ndarray, in_scope: np.ndarray, max_rejected_share: float) -> float:
    """The out-of-scope score threshold that turns away at most ``max_rejected_share`` of the in-scope
    validation texts: every text further out than those is rejected."""
    kept = np.asarray(scores, dtype=np.float64)[np.asarray(in_scope, dtype=bool)]
    if not len(kept):
        raise ValueError("choosing an out-of-scope threshold needs in-scope validation items")
    return float(np.quantile(kept, 1.0 - max_rejected_share, method="higher"))


def apply_abstention(
    probs: np.ndarray, choice: ThresholdChoice | None, fallback_index: int, ood_scores: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(final class indices, abstained mask): abstained texts get the fallback class."""
    predicted = probs.argmax(axis=1)
    if choice is None:
        return predicted, np.zeros(len(predicted), dtype=bool)
    abstained = ~choice.answered(probs, ood_scores)
    return np.where(abstained, fallback_index, predicted), abstained
