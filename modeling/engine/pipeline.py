"""Train → calibrate → choose the abstention threshold → measure; save/load/predict. What the Django side calls.

Artifact folder layout (written atomically by ``write_artifacts``)::

    head/…              the head (head.json + safetensors / TF-IDF vocabulary)
    calibration.json    temperature, threshold(s), label keys, fallback key
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
from modeling.engine.calibration import ThresholdChoice, choose_threshold, fit_temperature, probabilities
from modeling.engine.heads import (
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
from modeling.engine.metrics import evaluate_probabilities

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
DEFAULT_MIN_VAL_SIZE = 20


@dataclass
class TrainConfig:
    head_kind: str = "linear"  # linear | mlp | sklearn_lr | tfidf | hybrid
    hybrid: bool = False  # add character n-grams to a feature head (head_kind becomes the feature part)
    hybrid_mode: str = "ensemble"  # ensemble (logit mix tuned on val) | concat (one LR on both)
    loss: str = "weighted"  # weighted (1/log(1.02+share)) | focal (gamma 2) | none
    seed: int = 0
    abstain_target_kind: str = "precision"  # precision | coverage | macro_f1 | balanced
    abstain_target: float = 0.9
    per_class_thresholds: bool = False
    min_val_size: int = DEFAULT_MIN_VAL_SIZE
    head_options: dict = field(default_factory=dict)  # any other HeadConfig field, e.g. {"hidden_dim": 256}

    def __post_init__(self) -> None:
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
    confidence: float  # calibrated probability of the top class
    topk: list[tuple[str, float]]
    abstained: bool

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "topk": [[key, prob] for key, prob in self.topk],
            "abstained": self.abstained,
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
    ) -> None:
        self.head, self.temperature, self.choice = head, temperature, choice
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
        )

    def predict_proba(self, inputs: HeadInputs) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, uncalibrated probabilities), each (n, n_classes)."""
        logits = self.head.logits(inputs)
        return probabilities(logits, self.temperature), probabilities(logits)

    def predict(self, inputs: HeadInputs, k: int = 3) -> list[Prediction]:
        if len(inputs) == 0:
            return []
        k = max(1, min(int(k), len(self.label_keys)))
        probs = probabilities(self.head.logits(inputs), self.temperature)
        answered = self.choice.answered(probs)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        predictions = []
        for row, order, ok in zip(probs, top, answered, strict=True):
            topk = [(self.label_keys[i], round(float(row[i]), 6)) for i in order]
            label = topk[0][0] if ok else self.fallback_key
            predictions.append(Prediction(label, topk[0][1], topk, not bool(ok)))
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

    def predictor(self) -> Predictor:
        return Predictor(self.head, self.temperature, self.choice, self.label_keys, self.fallback_key)

    def calibration_record(self) -> dict:
        return {
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
    head = train_head(
        train, ytr, val, yva, len(label_keys), config.head_config(), config.seed, _scaled(progress, 0.9), should_stop
    )
    if should_stop is not None and should_stop():
        raise Cancelled("training cancelled")
    logits = head.logits(val)
    temperature = fit_temperature(logits, yva)
    probs, probs_raw = probabilities(logits, temperature), probabilities(logits)
    fallback_index = label_keys.index(fallback_key)
    choice = choose_threshold(
        probs,
        yva,
        config.abstain_target_kind,
        config.abstain_target,
        config.per_class_thresholds,
        fallback_index=fallback_index,
    )
    val_metrics = evaluate_probabilities(probs, yva, label_keys, fallback_index, choice, probs_raw)
    val_metrics["temperature"] = temperature
    summary = {
        "head_kind": head.kind,
        "ensemble_alpha": head.alpha,
        "best_epoch": head.best_epoch,
        "history": head.history,
        "n_train": len(ytr),
        "n_val": len(yva),
        "target_met_on_val": choice.target_met,
    }
    if progress is not None:
        progress(1.0, "calibrated")
    return TrainResult(
        head, temperature, choice, list(label_keys), fallback_key, config, {"val": val_metrics, **summary}
    )


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
        probs, y, predictor.label_keys, predictor.fallback_index, predictor.choice, probs_raw
    )
    metrics["temperature"] = predictor.temperature
    return metrics
