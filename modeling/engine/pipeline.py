"""Train → calibrate → choose the abstention threshold → measure; save/load/predict. What the Django side calls.

Artifact folder layout (written atomically by ``write_artifacts``)::

    head/…              the head (head.json + safetensors / TF-IDF vocabulary)
    calibration.json    temperature, threshold(s), label keys, fallback key, which items fitted what
    ood/…               the out-of-scope scorer (feature heads only; see ood.py)
    metrics.json        {"val": {...}, "test": {...}?, ...}
    train_config.json   the TrainConfig used
    manifest.json       sha256 of every file above
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from modeling.engine.artifacts import verify_artifacts, write_artifacts
from modeling.engine.evaluation.calibration import (
    DEFAULT_COVERAGE_FLOOR,
    ThresholdChoice,
    apply_abstention,
    choose_in_scope_accuracy_rule,
    choose_ood_threshold,
    choose_threshold,
    fit_temperature,
    probabilities,
)
from modeling.engine.evaluation.metrics import evaluate_probabilities
from modeling.engine.evaluation.ood import DISTANCE_GUARD_SHARE, OOD_KINDS, OodScorer
from modeling.engine.routes.heads import (
    FEATURE_KINDS,
    HEAD_KINDS,
    Cancelled,
    HeadConfig,
    HeadInputs,
    ProgressFn,
    StopFn,
    TrainedHead,
    load_head,
    train_head,
)

__all__ = [
    "Cancelled",
    "HeadInputs",
    "Prediction",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "train_and_calibrate",
]

HEAD_DIR = "head"
CALIBRATION_FILE = "calibration.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "train_config.json"
OOD_DIR = "ood"
DEFAULT_MIN_VAL_SIZE = 20
# val: the validation items of trained classes; val_clean: those minus what confident learning (cleanlab) flags
# as mislabelled; oof: out-of-fold logits of the training split (k extra head fits).
CALIBRATION_SOURCES = ("val", "val_clean", "oof")
DEFAULT_OOD_IN_SCOPE_LOSS = 0.01
IN_SCOPE_TARGET_GUARD_SHARE = 0.001


@dataclass
class TrainConfig:
    head_kind: str = "linear"  # linear | mlp | sklearn_lr | tfidf | hybrid
    hybrid: bool = False  # add character n-grams to a feature head (head_kind becomes the feature part)
    hybrid_mode: str = "ensemble"  # ensemble (logit mix tuned on val) | concat (one LR on both)
    loss: str = "weighted"  # weighted (1/log(1.02+share)) | focal (gamma 2) | none
    seed: int = 0
    abstain_target_kind: str = "precision"  # precision | coverage | macro_f1 | balanced | in_scope_acc
    abstain_target: float = 0.9
    per_class_thresholds: bool = False
    min_val_size: int = DEFAULT_MIN_VAL_SIZE
    coverage_floor: float = DEFAULT_COVERAGE_FLOOR  # tau answers at least this share when the target is unreachable
    calibration_source: str = "val"  # val | val_clean | oof
    calibration_folds: int = 5  # folds of the oof source
    ood_kind: str = "mahalanobis"  # none | mahalanobis | knn | auto (the one catching most val out-of-scope texts)
    ood_in_scope_loss: float = DEFAULT_OOD_IN_SCOPE_LOSS  # share of in-scope val texts the score may turn away
    ood_with_probability: bool = True  # one score: z-sum of the distance and -log(top probability), guarded
    head_options: dict = field(default_factory=dict)  # any other HeadConfig field, e.g. {"hidden_dim": 256}

    def __post_init__(self) -> None:
        if self.calibration_source not in CALIBRATION_SOURCES:
            raise ValueError(
                f"unknown calibration source {self.calibration_source!r}; "
                f"choose one of {', '.join(CALIBRATION_SOURCES)}"
            )
        if self.ood_kind not in ("none", "auto", *OOD_KINDS):
            raise ValueError(f"unknown out-of-scope score {self.ood_kind!r}; choose none, auto, {', '.join(OOD_KINDS)}")
        if not 0.0 <= self.ood_in_scope_loss < 1.0:
            raise ValueError(f"ood_in_scope_loss must be in [0, 1), got {self.ood_in_scope_loss}")
        if self.calibration_folds < 2:
            raise ValueError("calibration_folds must be at least 2")
        if self.head_kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {self.head_kind!r}; choose one of {', '.join(HEAD_KINDS)}")
        if self.hybrid and self.head_kind == "tfidf":
            raise ValueError("a hybrid head needs a feature head kind (linear, mlp or sklearn_lr), not tfidf")
        self.head_config()  # validates loss, hybrid mode and head_options early, with HeadConfig's messages

    def head_config(self) -> HeadConfig:
        known = {f.name for f in fields(HeadConfig)}
        unknown = set(self.head_options) - known
        if unknown:
            raise ValueError(f"unknown head options: {', '.join(sorted(unknown))}")
        kind, feature_kind = self.head_kind, "linear"
        if self.hybrid and self.head_kind in FEATURE_KINDS:
            kind, feature_kind = "hybrid", self.head_kind
        options = {"kind": kind, "feature_kind": feature_kind, "hybrid_mode": self.hybrid_mode, "loss": self.loss}
        return HeadConfig(**{**options, **self.head_options})

    @property
    def needs_features(self) -> bool:
        return self.head_config().needs_features

    @property
    def needs_texts(self) -> bool:
        return self.head_config().needs_texts

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class Prediction:
    label: str  # the fallback key when abstained
    confidence: float  # calibrated probability of ``label`` (of the fallback class when abstained)
    topk: list[tuple[str, float]]
    abstained: bool
    top_label: str = ""  # what the model would have answered
    top_confidence: float = 0.0  # its calibrated probability
    abstain_reason: str | None = None  # calibration.ABSTAIN_REASONS
    ood_score: float | None = None
    fallback_confidence: float = 0.0  # calibrated probability of the fallback class

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "top_label": self.top_label,
            "top_confidence": self.top_confidence,
            "topk": [[key, prob] for key, prob in self.topk],
            "abstained": self.abstained,
            "abstain_reason": self.abstain_reason,
        }


class Predictor:
    """A trained head with its temperature and abstention rule; predicts label keys."""

    def __init__(
        self,
        head: TrainedHead,
        temperature: float,
        choice: ThresholdChoice,
        label_keys: list[str],
        fallback_key: str,
        manifest: dict | None = None,
        ood: OodScorer | None = None,
    ) -> None:
        self.head, self.temperature, self.choice, self.ood = head, temperature, choice, ood
        self.label_keys, self.fallback_key, self.manifest = list(label_keys), fallback_key, manifest
        self.fallback_index = self.label_keys.index(fallback_key)

    @property
    def needs_features(self) -> bool:
        return self.head.config.needs_features

    @property
    def needs_texts(self) -> bool:
        return self.head.config.needs_texts

    @property
    def feature_dim(self) -> int | None:
        return self.head.feature_dim

    @classmethod
    def load(cls, directory: Path, verify: bool = True, expected_manifest: dict | None = None) -> Predictor:
        """Load an artifact folder; with verify (the default) every file's sha256 is checked first."""
        directory = Path(directory)
        manifest = verify_artifacts(directory, expected_manifest) if verify else None
        calibration = json.loads((directory / CALIBRATION_FILE).read_text(encoding="utf-8"))
        return cls(
            load_head(directory / HEAD_DIR),
            float(calibration["temperature"]),
            ThresholdChoice.from_dict(calibration["abstention"]),
            calibration["label_keys"],
            calibration["fallback_key"],
            manifest,
            OodScorer.load(directory / OOD_DIR),
        )

    def predict_proba(self, inputs: HeadInputs) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, uncalibrated probabilities), each (n, n_classes)."""
        logits = self.head.logits(inputs)
        return probabilities(logits, self.temperature), probabilities(logits)

    def ood_scores(self, inputs: HeadInputs, probs: np.ndarray | None = None) -> np.ndarray | None:
        if self.ood is None or inputs.features is None:
            return None
        return self.ood.combined(inputs.features, probs)

    def predict(self, inputs: HeadInputs, k: int = 3) -> list[Prediction]:
        if len(inputs) == 0:
            return []
        k = max(1, min(int(k), len(self.label_keys)))
        probs = probabilities(self.head.logits(inputs), self.temperature)
        scores = self.ood_scores(inputs, probs)
        reasons = self.choice.reasons(probs, scores)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        predictions = []
        for i, (row, order, reason) in enumerate(zip(probs, top, reasons, strict=True)):
            topk = [(self.label_keys[j], round(float(row[j]), 6)) for j in order]
            label = topk[0][0] if reason is None else self.fallback_key
            confidence = round(float(row[self.label_keys.index(label)]), 6)
            score = None if scores is None else round(float(scores[i]), 6)
            fallback = round(float(row[self.fallback_index]), 6)
            predictions.append(
                Prediction(label, confidence, topk, reason is not None, topk[0][0], topk[0][1], reason, score, fallback)
            )
        return predictions


@dataclass
class TrainResult:
    head: TrainedHead
    temperature: float
    choice: ThresholdChoice
    label_keys: list[str]
    fallback_key: str
    config: TrainConfig
    metrics: dict  # {"val": metric dict, ...}; callers may add "test" before saving
    ood: OodScorer | None = None
    calibration_items: dict = field(default_factory=dict)

    def predictor(self) -> Predictor:
        return Predictor(self.head, self.temperature, self.choice, self.label_keys, self.fallback_key, ood=self.ood)

    def calibration_record(self) -> dict:
        return {
            "calibration_items": self.calibration_items,
            "temperature": self.temperature,
            "threshold": self.choice.threshold,
            "class_thresholds": {self.label_keys[k]: v for k, v in self.choice.class_thresholds.items()},
            "abstention": self.choice.to_dict(),
            "label_keys": self.label_keys,
            "fallback_key": self.fallback_key,
        }

    def save(self, directory: Path, extra: Callable[[Path], None] | None = None) -> dict:
        """Write the artifact folder atomically and return its manifest. ``extra(tmp_dir)`` may add files
        (e.g. the training features for nearest-example explanations) that are hashed with the rest."""

        def write(tmp: Path) -> None:
            self.head.save(tmp / HEAD_DIR)
            if self.ood is not None:
                self.ood.save(tmp / OOD_DIR)
            _write_json(tmp / CALIBRATION_FILE, self.calibration_record())
            _write_json(tmp / METRICS_FILE, self.metrics)
            _write_json(tmp / CONFIG_FILE, self.config.to_dict())
            if extra is not None:
                extra(tmp)

        return write_artifacts(Path(directory), write)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def encode_labels(y: Sequence, label_keys: list[str], name: str = "labels") -> np.ndarray:
    """Class indices from label keys (or pass indices through), with a clear error for unknown keys."""
    values = list(y)
    if all(isinstance(v, (int, np.integer)) for v in values):
        y_idx = np.asarray(values, dtype=np.int64)
        if len(y_idx) and (y_idx.min() < 0 or y_idx.max() >= len(label_keys)):
            raise ValueError(f"{name}: class index out of range for {len(label_keys)} labels")
        return y_idx
    index = {key: i for i, key in enumerate(label_keys)}
    unknown = sorted({str(v) for v in values if v not in index})
    if unknown:
        raise ValueError(f"{name}: unknown label keys {', '.join(unknown[:10])} (not in the label set)")
    return np.asarray([index[v] for v in values], dtype=np.int64)


def _check_label_set(label_keys: list[str], fallback_key: str) -> None:
    if len(label_keys) < 2 or len(set(label_keys)) != len(label_keys):
        raise ValueError("label_keys must hold at least two distinct keys")
    if fallback_key not in label_keys:
        raise ValueError(f"fallback label {fallback_key!r} is not one of the label keys")


def train_and_calibrate(
    train: HeadInputs,
    y_train: Sequence,
    val: HeadInputs,
    y_val: Sequence,
    label_keys: list[str],
    fallback_key: str,
    config: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> TrainResult:
    """Train the head, fit the temperature and the abstention threshold on val, and measure val.

    Labels may be keys or class indices into ``label_keys``. Raises ValueError with a clear message when the
    validation split is too small to early-stop, calibrate and choose a threshold on, and ``Cancelled`` when
    ``should_stop()`` turns true.
    """
    _check_label_set(label_keys, fallback_key)
    ytr, yva = encode_labels(y_train, label_keys, "y_train"), encode_labels(y_val, label_keys, "y_val")
    if len(yva) < config.min_val_size:
        raise ValueError(
            f"the validation split has {len(yva)} labelled texts; at least {config.min_val_size} are needed to "
            "early-stop, calibrate and choose the abstention threshold. Label more texts or move some to val."
        )
    if len(np.unique(yva)) < 2:
        raise ValueError("the validation split holds a single class; calibration needs at least two")
    head_config = config.head_config()
    head = train_head(
        train, ytr, val, yva, len(label_keys), head_config, config.seed, _scaled(progress, 0.8), should_stop
    )
    if should_stop is not None and should_stop():
        raise Cancelled("training cancelled")
    fallback_index = label_keys.index(fallback_key)
    logits = head.logits(val)
    cal_logits, cal_y, cal_inputs, items = _calibration_set(
        head, train, ytr, val, yva, logits, label_keys, config, should_stop
    )
    temperature = fit_temperature(cal_logits, cal_y)
    tau_probs, tau_y, tau_inputs = _with_untrained_fallback(
        cal_logits, cal_y, cal_inputs, logits, yva, val, ytr, fallback_index, temperature, items
    )
    probs, probs_raw = probabilities(logits, temperature), probabilities(logits)
    ood, val_scores, choice = _choose_abstention(
        train, ytr, val, yva, probs, tau_probs, tau_y, tau_inputs, fallback_index, config, items
    )
    val_metrics = evaluate_probabilities(probs, yva, label_keys, fallback_index, choice, probs_raw, val_scores)
    val_metrics["temperature"] = temperature
    summary = {
        "head_kind": head.kind,
        "ensemble_alpha": head.alpha,
        "best_epoch": head.best_epoch,
        "history": head.history,
        "n_train": len(ytr),
        "n_val": len(yva),
        "target_met_on_val": choice.target_met,
        "abstention_warning": choice.warning,
        "calibration_items": items,
    }
    if progress is not None:
        progress(1.0, "calibrated")
    return TrainResult(
        head, temperature, choice, list(label_keys), fallback_key, config, {"val": val_metrics, **summary}, ood, items
    )


def _calibration_set(
    head: TrainedHead,
    train: HeadInputs,
    ytr: np.ndarray,
    val: HeadInputs,
    yva: np.ndarray,
    val_logits: np.ndarray,
    label_keys: list[str],
    config: TrainConfig,
    should_stop: StopFn | None,
) -> tuple[np.ndarray, np.ndarray, HeadInputs, dict]:
    """(logits, labels, inputs, record) the temperature (and, with the untrained fallback's val items, tau)
    are fitted on.

    Only items of classes the head was trained on: a class with no training example (typically 其他 when a team
    has no out-of-scope examples yet) gets near-zero probability for all its items, and fitting the temperature
    on them flattens every probability (T > 50 measured on CLINC150 without ``oos`` in train)."""
    trained = np.isin(yva, np.unique(ytr))
    untrained = sorted({label_keys[c] for c in np.unique(yva[~trained])})
    record: dict = {
        "source": config.calibration_source,
        "val_excluded_untrained_class": int((~trained).sum()),
        "untrained_classes": untrained,
    }
    if config.calibration_source == "oof":
        logits = out_of_fold_logits(head.config, train, ytr, val, yva, len(label_keys), config, should_stop)
        record.update(split="train (out-of-fold)", n=len(ytr), folds=config.calibration_folds)
        return logits, ytr, train, record
    keep = trained.copy()
    if config.calibration_source == "val_clean":
        flagged = _flagged_by_confident_learning(val_logits[trained], yva[trained])
        keep[np.flatnonzero(trained)[flagged]] = False
        record["val_excluded_flagged"] = int(flagged.sum())
    if len(np.unique(yva[keep])) < 2:
        raise ValueError(
            "fewer than two trained classes among the validation items left for calibration; label more "
            "validation texts of the trained labels"
        )
    record.update(split="val", n=int(keep.sum()))
    return val_logits[keep], yva[keep], val.subset(np.flatnonzero(keep)), record


def _flagged_by_confident_learning(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    probs = np.clip(probabilities(logits), 1e-8, None)
    return find_label_issues(y, probs / probs.sum(axis=1, keepdims=True), n_jobs=1)


def out_of_fold_logits(
    head_config: HeadConfig,
    train: HeadInputs,
    ytr: np.ndarray,
    val: HeadInputs,
    yva: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """Logits of every training row from a head of the same kind that never saw that row (stratified k-fold;
    early stopping on the validation split as for the served head)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(ytr, minlength=n_classes)
    strata = np.where(counts[ytr] >= config.calibration_folds, ytr, -1)
    folds = StratifiedKFold(n_splits=config.calibration_folds, shuffle=True, random_state=config.seed)
    out = np.zeros((len(ytr), n_classes), dtype=np.float64)
    for fit_idx, held_idx in folds.split(np.zeros(len(ytr)), strata):
        fold_head = train_head(
            train.subset(fit_idx), ytr[fit_idx], val, yva, n_classes, head_config, config.seed, None, should_stop
        )
        out[held_idx] = fold_head.logits(train.subset(held_idx))
    return out


def _with_untrained_fallback(
    cal_logits: np.ndarray,
    cal_y: np.ndarray,
    cal_inputs: HeadInputs,
    val_logits: np.ndarray,
    yva: np.ndarray,
    val: HeadInputs,
    ytr: np.ndarray,
    fallback_index: int,
    temperature: float,
    items: dict,
) -> tuple[np.ndarray, np.ndarray, HeadInputs]:
    """Tau's items: the calibration items plus the val texts of a fallback the head never trained on (the
    temperature must not see them; tau must, since answering them is an error)."""
    oos = (yva == fallback_index) & ~np.isin(yva, np.unique(ytr))
    items["threshold"] = {"n": len(cal_y) + int(oos.sum()), "out_of_scope_val_items": int(oos.sum())}
    probs = probabilities(np.r_[cal_logits, val_logits[oos]], temperature)
    features = None if cal_inputs.features is None else np.r_[cal_inputs.features, val.features[oos]]
    return probs, np.r_[cal_y, yva[oos]], HeadInputs(features)


def _choose_abstention(
    train: HeadInputs,
    ytr: np.ndarray,
    val: HeadInputs,
    yva: np.ndarray,
    probs: np.ndarray,
    tau_probs: np.ndarray,
    tau_y: np.ndarray,
    tau_inputs: HeadInputs,
    fallback_index: int,
    config: TrainConfig,
    items: dict,
) -> tuple[OodScorer | None, np.ndarray | None, ThresholdChoice]:
    """The out-of-scope scorer (or None), its val scores and the abstention rule; with several scorer kinds,
    the one catching the most gold out-of-scope val texts."""
    gold_oos = yva == fallback_index
    best = None
    for ood, val_scores, delta in _ood_candidates(train, ytr, val, yva, probs, fallback_index, config):
        tau_scores = None if ood is None else ood.combined(tau_inputs.features, tau_probs)
        if config.abstain_target_kind == "in_scope_acc" and tau_scores is not None:
            # One threshold on the combined score, chosen for the target itself (not after a fixed loss share).
            choice = choose_in_scope_accuracy_rule(
                tau_probs, tau_y, fallback_index, config.abstain_target, tau_scores, config.coverage_floor
            )
        else:
            kept = np.ones(len(tau_y), dtype=bool) if tau_scores is None else tau_scores <= delta
            choice = _threshold_on_kept(tau_probs, tau_y, kept, fallback_index, config)
            choice.ood_threshold = None if ood is None else delta
        choice.ood_kind = None if ood is None else ood.kind
        final, _ = apply_abstention(probs, choice, fallback_index, val_scores)
        recall = float((final[gold_oos] == fallback_index).mean()) if gold_oos.any() else 0.0
        if best is None or recall > best[0] + 1e-12:
            best = (recall, ood, val_scores, choice)
    _, ood, val_scores, choice = best
    if ood is not None:
        items["ood_threshold"] = {
            "split": "val",
            "kind": ood.kind,
            "with_probability": ood.mix is not None,
            "n_in_scope": int((~gold_oos & np.isin(yva, np.unique(ytr))).sum()),
            "n_out_of_scope": int(gold_oos.sum()),
            "rule": _ood_rule(config),
        }
    return ood, val_scores, choice


def _guard_share(config: TrainConfig) -> float:
    # Every in-scope text the guard turns away is charged to an in-scope accuracy target; on CLINC150 val half A
    # the 0.5 % guard cost 4 of 56 out-of-scope texts caught at in-scope accuracy 0.95, 0.1 % none.
    return IN_SCOPE_TARGET_GUARD_SHARE if config.abstain_target_kind == "in_scope_acc" else DISTANCE_GUARD_SHARE


def _ood_rule(config: TrainConfig) -> str:
    if config.abstain_target_kind == "in_scope_acc":
        return f"the most out-of-scope val texts caught with in-scope val accuracy >= {config.abstain_target:g}"
    return f"turns away at most {config.ood_in_scope_loss:.1%} of the in-scope validation texts"


def _ood_candidates(
    train: HeadInputs,
    ytr: np.ndarray,
    val: HeadInputs,
    yva: np.ndarray,
    val_probs: np.ndarray,
    fallback_index: int,
    config: TrainConfig,
) -> list[tuple[OodScorer | None, np.ndarray | None, float | None]]:
    """(scorer, val scores, threshold) per out-of-scope score to try; (None, None, None) without features.

    A scorer is fitted on the in-scope training rows; its threshold turns away at most ``ood_in_scope_loss``
    of the in-scope val texts. With ``auto`` every kind is tried and the caller keeps the one catching the
    most gold out-of-scope val texts."""
    in_scope = (yva != fallback_index) & np.isin(yva, np.unique(ytr))
    if config.ood_kind == "none" or train.features is None or val.features is None or not in_scope.any():
        return [(None, None, None)]
    candidates = []
    for kind in OOD_KINDS if config.ood_kind == "auto" else (config.ood_kind,):
        scorer = OodScorer.fit(kind, train.features, ytr, exclude=(fallback_index,))
        if config.ood_with_probability:
            # The head's own belief in the fallback joins the score only when it learnt the fallback from examples.
            trained_fallback = fallback_index if fallback_index in set(ytr.tolist()) else None
            scorer.with_probability(
                val.features[in_scope], val_probs[in_scope], _guard_share(config), fallback_index=trained_fallback
            )
        scores = scorer.combined(val.features, val_probs)
        candidates.append((scorer, scores, choose_ood_threshold(scores, in_scope, config.ood_in_scope_loss)))
    return candidates


def _threshold_on_kept(
    probs: np.ndarray, y: np.ndarray, kept: np.ndarray, fallback_index: int, config: TrainConfig
) -> ThresholdChoice:
    """Tau chosen on the texts the out-of-scope score keeps, so the owner's target holds for what is answered;
    a coverage target is scaled up for the share the score already turned away."""
    target = config.abstain_target
    if config.abstain_target_kind == "coverage" and kept.any():
        target = min(1.0, target * len(kept) / kept.sum())
    if not kept.any() or len(np.unique(y[kept])) < 2:
        kept = np.ones(len(y), dtype=bool)
    choice = choose_threshold(
        probs[kept],
        y[kept],
        config.abstain_target_kind,
        target,
        config.per_class_thresholds,
        fallback_index=fallback_index,
        coverage_floor=config.coverage_floor,
    )
    choice.target = float(config.abstain_target)
    return choice


def _scaled(progress: ProgressFn | None, span: float) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(fraction * span, message)


def evaluate(predictor: Predictor, inputs: HeadInputs, y_true_keys: Sequence) -> dict:
    """Metric dict for a labelled split (e.g. test), in the same shape as the val metrics."""
    y = encode_labels(y_true_keys, predictor.label_keys, "y_true")
    if len(y) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(y)} labels")
    probs, probs_raw = predictor.predict_proba(inputs)
    metrics = evaluate_probabilities(
        probs,
        y,
        predictor.label_keys,
        predictor.fallback_index,
        predictor.choice,
        probs_raw,
        predictor.ood_scores(inputs, probs),
    )
    metrics["temperature"] = predictor.temperature
    return metrics
