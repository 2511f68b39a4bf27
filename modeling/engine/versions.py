"""A model version: train any route, calibrate and measure it, save it as one self-contained folder, load it
back and predict. The one entry point training, serving, evaluation, active learning and the benchmarks use.

Everything after the route's logits is route-agnostic: the temperature, the abstention rule, the out-of-scope
score (when the route returns features), the metrics and the explain index.

Artifact folder (written atomically; only this module knows the layout)::

    version.json        format, route name + params, calibration params, label keys, fallback key,
                        the route's describe() (backbone name and fingerprint, ...)
    route/…             the route's own files (Fitted.save)
    calibration.json    temperature, threshold(s), abstention rule, which items fitted what
    ood/…               the out-of-scope scorer (routes with features)
    explain/            features.npy (L2-normalised training features) + examples.json (what each row is:
                        label and the caller's reference; texts only when the caller passes them)
    metrics.json        {"val": {...}, "test": {...}?, ...}
    manifest.json       sha256 of every file above
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeling.engine.artifacts import verify_artifacts, write_artifacts
from modeling.engine.data import prepare_training_set
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
from modeling.engine.evaluation.ood import DISTANCE_GUARD_SHARE, OodScorer
from modeling.engine.files import read_json, write_json
from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import (
    Cancelled,
    Examples,
    FitContext,
    Fitted,
    LoadContext,
    ParamsError,
    RouteParams,
    encode_labels,
)
from modeling.engine.serving_precision import GateResult, quality_gate

__all__ = [
    "CalibrationParams",
    "Cancelled",
    "Prediction",
    "Predictor",
    "TrainedVersion",
    "calibration_params",
    "jsonable",
    "train_version",
]

FORMAT = 2
VERSION_FILE = "version.json"
ROUTE_DIR = "route"
CALIBRATION_FILE = "calibration.json"
METRICS_FILE = "metrics.json"
OOD_DIR = "ood"
EXPLAIN_DIR = "explain"
DEFAULT_MIN_VAL_SIZE = 20
DEFAULT_OOD_IN_SCOPE_LOSS = 0.01
IN_SCOPE_TARGET_GUARD_SHARE = 0.001


class CalibrationParams(BaseModel):
    """How a version turns logits into answers: temperature source, abstention target, out-of-scope score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    abstain_target_kind: Literal["precision", "coverage", "macro_f1", "balanced", "in_scope_acc"] = Field(
        "precision", description="What the abstention threshold is chosen for on validation."
    )
    abstain_target: float = Field(0.9, gt=0.0, le=1.0, description="The target's value, e.g. precision 0.9.")
    per_class_thresholds: bool = Field(False, description="One threshold per predicted class instead of one.")
    min_val_size: int = Field(
        DEFAULT_MIN_VAL_SIZE, ge=2, description="Fewest validation texts to calibrate and early-stop on."
    )
    coverage_floor: float = Field(
        DEFAULT_COVERAGE_FLOOR, ge=0.0, le=1.0, description="Share always answered when the target is unreachable."
    )
    calibration_source: Literal["val", "val_clean", "oof"] = Field(
        "val",
        description="Items the temperature is fitted on: val; val minus what confident learning flags; "
        "out-of-fold logits of train (calibration_folds extra fits).",
    )
    calibration_folds: int = Field(5, ge=2, le=20, description="Folds of the oof source.")
    ood_kind: Literal["none", "auto", "mahalanobis", "knn"] = Field(
        "mahalanobis",
        description="Out-of-scope score on the route's features; auto keeps the one catching most val "
        "out-of-scope texts.",
    )
    ood_in_scope_loss: float = Field(
        DEFAULT_OOD_IN_SCOPE_LOSS, ge=0.0, lt=1.0, description="Share of in-scope val texts the score may turn away."
    )
    ood_with_probability: bool = Field(
        True, description="One score: z-sum of the distance and -log(top probability), guarded."
    )


def calibration_params(data: dict[str, Any] | None) -> CalibrationParams:
    """Validated calibration params; ParamsError names an unknown or invalid key."""
    try:
        return CalibrationParams.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first.get("loc", ())) or None
        if first.get("type") == "extra_forbidden":
            raise ParamsError(f"unknown calibration parameter {key!r}", key=key) from exc
        raise ParamsError(f"calibration parameter {key!r}: {first.get('msg')}", key=key) from exc


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
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # nearest training examples, when asked

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


@dataclass
class Scored:
    """Everything a version computes for n texts before choosing answers."""

    probs: np.ndarray  # calibrated (n, n_classes)
    probs_raw: np.ndarray  # at temperature 1
    features: np.ndarray | None
    ood_scores: np.ndarray | None


@dataclass
class ExplainIndex:
    """L2-normalised training features and, per row, what the caller said it is (label, item id, text)."""

    features: np.ndarray
    rows: list[dict[str, Any]]

    @classmethod
    def build(cls, features: np.ndarray | None, rows: list[dict[str, Any]]) -> ExplainIndex | None:
        if features is None or not len(rows):
            return None
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return cls((features / np.maximum(norms, 1e-12)).astype(np.float32), rows)

    def nearest(self, features: np.ndarray, n: int) -> list[list[dict[str, Any]]]:
        queries = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        similarity = queries @ self.features.T
        n = min(n, similarity.shape[1])
        top = np.argsort(-similarity, axis=1)[:, :n]
        return [
            [{**self.rows[j], "similarity": round(float(similarity[r, j]), 4)} for j in top[r]]
            for r in range(len(queries))
        ]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "features.npy", self.features)
        write_json(folder / "examples.json", self.rows)

    @classmethod
    def load(cls, folder: Path) -> ExplainIndex | None:
        if not (folder / "features.npy").exists():
            return None
        return cls(np.load(folder / "features.npy"), read_json(folder / "examples.json"))


class Predictor:
    """A loaded (or just trained) version: texts in, calibrated predictions out."""

    def __init__(
        self,
        route_name: str,
        fitted: Fitted,
        temperature: float,
        choice: ThresholdChoice,
        label_keys: list[str],
        fallback_key: str,
        ood: OodScorer | None = None,
        explain: ExplainIndex | None = None,
        manifest: dict | None = None,
        info: dict | None = None,
    ) -> None:
        self.route_name, self.temperature, self.choice = route_name, temperature, choice
        self.label_keys, self.fallback_key, self.ood, self.explain = list(label_keys), fallback_key, ood, explain
        self.manifest, self.info = manifest, dict(info or {})
        self.fallback_index = self.label_keys.index(fallback_key)
        # The precision this process serves the version with (recorded in info for the model's callers).
        # `trained` stays the one training fitted: its features are those the feature cache holds.
        self.trained = fitted
        self.fitted, self.precision = _serving_fitted(fitted, self.info.get("serving"))
        self.info["served_precision"] = self.precision

    @classmethod
    def load(
        cls,
        folder: Path,
        ctx: LoadContext | None = None,
        *,
        model_root: Path | None = None,
        verify: bool = True,
        expected_manifest: dict | None = None,
    ) -> Predictor:
        """Load a version folder; with verify (the default) every file's sha256 is checked first."""
        folder = Path(folder)
        manifest = verify_artifacts(folder, expected_manifest) if verify else None
        ctx = ctx or LoadContext(model_root=model_root)
        record = read_json(folder / VERSION_FILE)
        calibration = read_json(folder / CALIBRATION_FILE)
        fitted = get_route(record["route"]).load(folder / ROUTE_DIR, ctx)
        return cls(
            record["route"],
            fitted,
            float(calibration["temperature"]),
            ThresholdChoice.from_dict(calibration["abstention"]),
            record["label_keys"],
            record["fallback_key"],
            OodScorer.load(folder / OOD_DIR),
            ExplainIndex.load(folder / EXPLAIN_DIR),
            manifest,
            record,
        )

    @property
    def has_features(self) -> bool:
        return self.ood is not None or self.explain is not None

    def encode(self, texts: Sequence[str]) -> Any:
        return self.fitted.encode(list(texts))

    def score(self, texts: Sequence[str]) -> Scored:
        encoded = self.fitted.encode(list(texts))
        probs = probabilities(encoded.logits, self.temperature)
        scores = None
        if self.ood is not None and encoded.features is not None:
            scores = self.ood.combined(encoded.features, probs)
        return Scored(probs, probabilities(encoded.logits), encoded.features, scores)

    def predict(self, texts: Sequence[str], k: int = 3, explain: bool = False) -> list[Prediction]:
        """Predictions in input order. Abstained texts always carry their nearest training examples (reviewers
        see them); with ``explain`` every text does."""
        return self.predict_scored(texts, k, explain)[0]

    def predict_scored(
        self, texts: Sequence[str], k: int = 3, explain: bool = False
    ) -> tuple[list[Prediction], Scored]:
        """``predict`` and the scores it answered from (the cascade combines the calibrated probabilities)."""
        texts = list(texts)
        if not texts:
            return [], Scored(np.zeros((0, len(self.label_keys))), np.zeros((0, len(self.label_keys))), None, None)
        scored = self.score(texts)
        predictions = self._answers(scored, k)
        wanted = [i for i, p in enumerate(predictions) if explain or p.abstained]
        if wanted and self.explain is not None and scored.features is not None:
            for i, near in zip(wanted, self.explain.nearest(scored.features[wanted], k), strict=True):
                predictions[i].neighbours = near
        return predictions, scored

    def answers(self, probs: np.ndarray, ood_scores: np.ndarray | None, k: int = 3) -> list[Prediction]:
        """This version's abstention rule applied to calibrated probabilities computed elsewhere."""
        return self._answers(Scored(probs, probs, None, ood_scores), k)

    def _answers(self, scored: Scored, k: int) -> list[Prediction]:
        k = max(1, min(int(k), len(self.label_keys)))
        probs, scores = scored.probs, scored.ood_scores
        reasons = self.choice.reasons(probs, scores)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        out = []
        for i, (row, order, reason) in enumerate(zip(probs, top, reasons, strict=True)):
            topk = [(self.label_keys[j], round(float(row[j]), 6)) for j in order]
            label = topk[0][0] if reason is None else self.fallback_key
            confidence = round(float(row[self.label_keys.index(label)]), 6)
            score = None if scores is None else round(float(scores[i]), 6)
            fallback = round(float(row[self.fallback_index]), 6)
            out.append(Prediction(label, confidence, topk, reason is not None, *topk[0], reason, score, fallback))
        return out

    def evaluate(self, examples: Examples) -> dict[str, Any]:
        """Metric dict of a labelled split (e.g. test), the same shape as the val metrics."""
        y = encode_labels(examples.labels, self.label_keys, "labels")
        scored = self.score(examples.texts)
        metrics = evaluate_probabilities(
            scored.probs, y, self.label_keys, self.fallback_index, self.choice, scored.probs_raw, scored.ood_scores
        )
        metrics["temperature"] = self.temperature
        return metrics


@dataclass
class TrainedVersion:
    route_name: str
    params: RouteParams
    calibration: CalibrationParams
    fitted: Fitted
    temperature: float
    choice: ThresholdChoice
    label_keys: list[str]
    fallback_key: str
    metrics: dict[str, Any]  # {"val": metric dict, ...}; callers may add "test" before saving
    ood: OodScorer | None = None
    explain: ExplainIndex | None = None
    calibration_items: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)  # {"int8_gate": GateResult.to_dict()} when tried

    def describe(self) -> dict[str, Any]:
        return jsonable(self.fitted.describe())

    def predictor(self) -> Predictor:
        return Predictor(
            self.route_name,
            self.fitted,
            self.temperature,
            self.choice,
            self.label_keys,
            self.fallback_key,
            self.ood,
            self.explain,
            info=self.record(),
        )

    def calibration_record(self) -> dict[str, Any]:
        return jsonable(
            {
                "calibration_items": self.calibration_items,
                "temperature": self.temperature,
                "threshold": self.choice.threshold,
                "class_thresholds": {self.label_keys[k]: v for k, v in self.choice.class_thresholds.items()},
                "abstention": self.choice.to_dict(),
                "label_keys": self.label_keys,
                "fallback_key": self.fallback_key,
            }
        )

    def record(self) -> dict[str, Any]:
        return jsonable(
            {
                "format": FORMAT,
                "route": self.route_name,
                "params": self.params.model_dump(mode="json"),
                "calibration": self.calibration.model_dump(mode="json"),
                "label_keys": self.label_keys,
                "fallback_key": self.fallback_key,
                "describe": self.fitted.describe(),
                "serving": self.serving,
            }
        )

    def save(self, folder: Path) -> dict:
        """Write the version folder atomically and return its manifest."""

        def write(tmp: Path) -> None:
            write_json(tmp / VERSION_FILE, self.record())
            self.fitted.save(tmp / ROUTE_DIR)
            if self.ood is not None:
                self.ood.save(tmp / OOD_DIR)
            if self.explain is not None:
                self.explain.save(tmp / EXPLAIN_DIR)
            write_json(tmp / CALIBRATION_FILE, self.calibration_record())
            write_json(tmp / METRICS_FILE, jsonable(self.metrics))

        return write_artifacts(Path(folder), write)


# --- training ---------------------------------------------------------------------------------------------


def train_version(
    route_name: str,
    params: RouteParams | dict[str, Any] | None,
    train: Examples,
    val: Examples,
    ctx: FitContext,
    calibration: CalibrationParams | None = None,
    *,
    budget_minutes: float | None = None,
    explain_rows: list[dict[str, Any]] | None = None,
) -> TrainedVersion:
    """Fit a route, then calibrate on val: temperature, abstention threshold(s), out-of-scope score, metrics.

    ``params`` may be the route's Params or a dict (ParamsError names an unknown key). ``budget_minutes`` sets
    ``ctx.deadline``: the route ends training cleanly with what it has, and calibration still runs.
    ``explain_rows`` (one dict per train text, e.g. item id and stored text) describe the explain index's
    rows; without them a row holds its label only. Raises ValueError when val is too small to calibrate on,
    and Cancelled when ``ctx.should_stop()`` turns true."""
    route = get_route(route_name)
    params = params if isinstance(params, RouteParams) else parse_params(route_name, params)
    calibration = calibration or CalibrationParams()
    _check_label_set(ctx.label_keys, ctx.taxonomy.fallback_key)
    if budget_minutes is not None and ctx.deadline is None:
        ctx = replace(ctx, deadline=time.monotonic() + 60.0 * float(budget_minutes))
    if not route.needs_training and not len(val):
        return _uncalibrated(route_name, route, params, calibration, ctx)
    ytr, yva = encode_labels(train.labels, ctx.label_keys, "train"), encode_labels(val.labels, ctx.label_keys, "val")
    _check_val(yva, calibration)
    fit_set, data_report = prepare_training_set(train, ctx, params)
    started = time.perf_counter()
    fitted = route.fit(fit_set, val, params, ctx)
    train_seconds = time.perf_counter() - started
    ctx.check_cancel()
    calibrate = ctx.stage("calibrate")
    calibrate(0.0, "scoring validation")
    val_encoded = fitted.encode(val.texts)
    train_features = fitted.encode(train.texts).features if val_encoded.features is not None else None
    fallback_index = ctx.label_keys.index(ctx.taxonomy.fallback_key)
    split = _Split(train_features, ytr, val_encoded.features, yva, val_encoded.logits)
    cal_logits, cal_y, cal_features, items = _calibration_set(route, params, train, val, split, ctx, calibration)
    temperature = fit_temperature(cal_logits, cal_y)
    tau = _with_untrained_fallback(cal_logits, cal_y, cal_features, split, fallback_index, temperature, items)
    probs, probs_raw = probabilities(split.val_logits, temperature), probabilities(split.val_logits)
    calibrate(0.6, "abstention rule")
    ood, val_scores, choice = _choose_abstention(split, probs, tau, fallback_index, calibration, items)
    val_metrics = evaluate_probabilities(probs, yva, ctx.label_keys, fallback_index, choice, probs_raw, val_scores)
    val_metrics["temperature"] = temperature
    described = jsonable(fitted.describe())
    metrics = {
        "val": val_metrics,
        "route": route_name,
        "head_kind": described.get("head_kind", route_name),
        "ensemble_alpha": described.get("ensemble_alpha"),
        "best_epoch": described.get("best_epoch"),
        "warm_start": described.get("warm_start"),
        "n_train": len(ytr),
        "n_val": len(yva),
        "target_met_on_val": choice.target_met,
        "abstention_warning": choice.warning,
        "calibration_items": items,
        "training_data": data_report,
        "train_seconds": round(train_seconds, 3),
        "stopped_by_budget": ctx.out_of_time(),
    }
    calibrate(0.9, "INT8 quality gate")
    gate = _int8_gate(fitted, val, yva, temperature, ctx.label_keys, val_metrics)
    serving = {} if gate is None else {"int8_gate": gate.to_dict()}
    metrics["serving"] = serving
    rows = explain_rows if explain_rows is not None else [{"label": label} for label in train.labels]
    calibrate(1.0, "calibrated")
    return TrainedVersion(
        route_name,
        params,
        calibration,
        fitted,
        temperature,
        choice,
        list(ctx.label_keys),
        ctx.taxonomy.fallback_key,
        metrics,
        ood,
        ExplainIndex.build(train_features, rows),
        items,
        serving,
    )


def _int8_gate(
    fitted: Fitted, val: Examples, yva: np.ndarray, temperature: float, label_keys: list[str], reference: dict
) -> GateResult | None:
    """Score val again on the route's INT8 variant (same head, temperature) and compare; None: no variant."""
    variant = getattr(fitted, "int8_variant", None)
    candidate = variant() if variant is not None else None
    if candidate is None:
        return None
    probs = probabilities(candidate.encode(val.texts).logits, temperature)
    metrics = evaluate_probabilities(probs, yva, label_keys)
    reference_precision = str(jsonable(fitted.describe()).get("dtype", "bf16"))
    return quality_gate(reference_precision, reference, metrics, len(yva))


def _serving_fitted(fitted: Fitted, serving: dict[str, Any] | None) -> tuple[Fitted, str]:
    """The Fitted a version serves with and its precision: the INT8 variant only when the version passed
    its quality gate and the timing probe finds INT8 faster on this machine; otherwise the trained one."""
    trained = str(jsonable(fitted.describe()).get("dtype", "model"))
    gate = (serving or {}).get("int8_gate")
    if not gate or not GateResult.from_dict(gate).passed:
        return fitted, trained
    candidate = fitted.int8_variant()
    if candidate is None or not fitted.int8_pays_here(candidate):
        return fitted, trained
    return candidate, "int8"


UNCALIBRATED_WARNING = (
    "No validation texts: the probabilities are not calibrated and every text is answered. Label validation "
    "texts and train again to calibrate and abstain."
)


def _uncalibrated(
    route_name: str, route: Any, params: RouteParams, calibration: CalibrationParams, ctx: FitContext
) -> TrainedVersion:
    """A route that needs no training (zero-shot), without validation texts: temperature 1, no abstention."""
    started = time.perf_counter()
    fitted = route.fit(Examples([], []), Examples([], []), params, ctx)
    choice = ThresholdChoice(
        calibration.abstain_target_kind,
        calibration.abstain_target,
        0.0,
        target_met=False,
        val_coverage=1.0,
        coverage_floor=calibration.coverage_floor,
        warning=UNCALIBRATED_WARNING,
    )
    metrics = {
        "val": None,
        "route": route_name,
        "n_train": 0,
        "n_val": 0,
        "target_met_on_val": False,
        "abstention_warning": UNCALIBRATED_WARNING,
        "calibration_items": {"source": "none", "n": 0},
        "train_seconds": round(time.perf_counter() - started, 3),
        "stopped_by_budget": ctx.out_of_time(),
    }
    keys, fallback = list(ctx.label_keys), ctx.taxonomy.fallback_key
    return TrainedVersion(route_name, params, calibration, fitted, 1.0, choice, keys, fallback, metrics)


@dataclass
class _Split:
    train_features: np.ndarray | None
    ytr: np.ndarray
    val_features: np.ndarray | None
    yva: np.ndarray
    val_logits: np.ndarray


@dataclass
class _TauSet:
    probs: np.ndarray
    y: np.ndarray
    features: np.ndarray | None


def _check_label_set(label_keys: list[str], fallback_key: str) -> None:
    if len(label_keys) < 2 or len(set(label_keys)) != len(label_keys):
        raise ValueError("label_keys must hold at least two distinct keys")
    if fallback_key not in label_keys:
        raise ValueError(f"fallback label {fallback_key!r} is not one of the label keys")


def _check_val(yva: np.ndarray, calibration: CalibrationParams) -> None:
    if len(yva) < calibration.min_val_size:
        raise ValueError(
            f"the validation split has {len(yva)} labelled texts; at least {calibration.min_val_size} are needed "
            "to early-stop, calibrate and choose the abstention threshold. Label more texts or move some to val."
        )
    if len(np.unique(yva)) < 2:
        raise ValueError("the validation split holds a single class; calibration needs at least two")


def _calibration_set(
    route: Any,
    params: RouteParams,
    train: Examples,
    val: Examples,
    split: _Split,
    ctx: FitContext,
    calibration: CalibrationParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """(logits, labels, features, record) the temperature (and, with the untrained fallback's val items, tau)
    are fitted on.

    Only items of classes the route was trained on: a class with no training example (typically 其他 when a
    team has no out-of-scope examples yet) gets near-zero probability for all its items, and fitting the
    temperature on them flattens every probability (T > 50 measured on CLINC150 without ``oos`` in train)."""
    yva, ytr = split.yva, split.ytr
    trained = np.isin(yva, np.unique(ytr))
    untrained = sorted({ctx.label_keys[c] for c in np.unique(yva[~trained])})
    record: dict = {
        "source": calibration.calibration_source,
        "val_excluded_untrained_class": int((~trained).sum()),
        "untrained_classes": untrained,
    }
    if calibration.calibration_source == "oof":
        logits = _out_of_fold_logits(route, params, train, val, ytr, ctx, calibration)
        record.update(split="train (out-of-fold)", n=len(ytr), folds=calibration.calibration_folds)
        return logits, ytr, split.train_features, record
    keep = trained.copy()
    if calibration.calibration_source == "val_clean":
        flagged = _flagged_by_confident_learning(split.val_logits[trained], yva[trained])
        keep[np.flatnonzero(trained)[flagged]] = False
        record["val_excluded_flagged"] = int(flagged.sum())
    if len(np.unique(yva[keep])) < 2:
        raise ValueError(
            "fewer than two trained classes among the validation items left for calibration; label more "
            "validation texts of the trained labels"
        )
    record.update(split="val", n=int(keep.sum()))
    features = None if split.val_features is None else split.val_features[keep]
    return split.val_logits[keep], yva[keep], features, record


def _flagged_by_confident_learning(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    probs = np.clip(probabilities(logits), 1e-8, None)
    return find_label_issues(y, probs / probs.sum(axis=1, keepdims=True), n_jobs=1)


def _out_of_fold_logits(
    route: Any,
    params: RouteParams,
    train: Examples,
    val: Examples,
    ytr: np.ndarray,
    ctx: FitContext,
    calibration: CalibrationParams,
) -> np.ndarray:
    """Logits of every training row from a fit of the same route that never saw that row (stratified k-fold;
    early stopping on the validation split as for the served model)."""
    from sklearn.model_selection import StratifiedKFold

    n_classes = len(ctx.label_keys)
    counts = np.bincount(ytr, minlength=n_classes)
    strata = np.where(counts[ytr] >= calibration.calibration_folds, ytr, -1)
    folds = StratifiedKFold(n_splits=calibration.calibration_folds, shuffle=True, random_state=ctx.seed)
    fold_ctx = replace(ctx, progress=None, checkpoint_dir=None)
    out = np.zeros((len(ytr), n_classes), dtype=np.float64)
    for fit_idx, held_idx in folds.split(np.zeros(len(ytr)), strata):
        fitted = route.fit(_subset(train, fit_idx), val, params, fold_ctx)
        out[held_idx] = fitted.logits([train.texts[i] for i in held_idx])
    return out


def _subset(examples: Examples, index: np.ndarray) -> Examples:
    weights = None if examples.weights is None else examples.weights[index]
    return Examples([examples.texts[i] for i in index], [examples.labels[i] for i in index], weights)


def _with_untrained_fallback(
    cal_logits: np.ndarray,
    cal_y: np.ndarray,
    cal_features: np.ndarray | None,
    split: _Split,
    fallback_index: int,
    temperature: float,
    items: dict,
) -> _TauSet:
    """Tau's items: the calibration items plus the val texts of a fallback the route never trained on (the
    temperature must not see them; tau must, since answering them is an error)."""
    oos = (split.yva == fallback_index) & ~np.isin(split.yva, np.unique(split.ytr))
    items["threshold"] = {"n": len(cal_y) + int(oos.sum()), "out_of_scope_val_items": int(oos.sum())}
    probs = probabilities(np.r_[cal_logits, split.val_logits[oos]], temperature)
    features = None
    if cal_features is not None and split.val_features is not None:
        features = np.r_[cal_features, split.val_features[oos]]
    return _TauSet(probs, np.r_[cal_y, split.yva[oos]], features)


def _choose_abstention(
    split: _Split,
    probs: np.ndarray,
    tau: _TauSet,
    fallback_index: int,
    calibration: CalibrationParams,
    items: dict,
) -> tuple[OodScorer | None, np.ndarray | None, ThresholdChoice]:
    """The out-of-scope scorer (or None), its val scores and the abstention rule; with several scorer kinds,
    the one catching the most gold out-of-scope val texts."""
    gold_oos = split.yva == fallback_index
    best = None
    for ood, val_scores, delta in _ood_candidates(split, probs, fallback_index, calibration):
        tau_scores = None if ood is None or tau.features is None else ood.combined(tau.features, tau.probs)
        if calibration.abstain_target_kind == "in_scope_acc" and tau_scores is not None:
            # One threshold on the combined score, chosen for the target itself (not after a fixed loss share).
            choice = choose_in_scope_accuracy_rule(
                tau.probs, tau.y, fallback_index, calibration.abstain_target, tau_scores, calibration.coverage_floor
            )
        else:
            kept = np.ones(len(tau.y), dtype=bool) if tau_scores is None else tau_scores <= delta
            choice = _threshold_on_kept(tau.probs, tau.y, kept, fallback_index, calibration)
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
            "n_in_scope": int((~gold_oos & np.isin(split.yva, np.unique(split.ytr))).sum()),
            "n_out_of_scope": int(gold_oos.sum()),
            "rule": _ood_rule(calibration),
        }
    return ood, val_scores, choice


def _guard_share(calibration: CalibrationParams) -> float:
    # Every in-scope text the guard turns away is charged to an in-scope accuracy target; on CLINC150 val half A
    # the 0.5 % guard cost 4 of 56 out-of-scope texts caught at in-scope accuracy 0.95, 0.1 % none.
    if calibration.abstain_target_kind == "in_scope_acc":
        return IN_SCOPE_TARGET_GUARD_SHARE
    return DISTANCE_GUARD_SHARE


def _ood_rule(calibration: CalibrationParams) -> str:
    if calibration.abstain_target_kind == "in_scope_acc":
        return f"the most out-of-scope val texts caught with in-scope val accuracy >= {calibration.abstain_target:g}"
    return f"turns away at most {calibration.ood_in_scope_loss:.1%} of the in-scope validation texts"


def _ood_candidates(
    split: _Split, val_probs: np.ndarray, fallback_index: int, calibration: CalibrationParams
) -> list[tuple[OodScorer | None, np.ndarray | None, float | None]]:
    """(scorer, val scores, threshold) per out-of-scope score to try; (None, None, None) without features.

    A scorer is fitted on the in-scope training rows; its threshold turns away at most ``ood_in_scope_loss``
    of the in-scope val texts. With ``auto`` every kind is tried and the caller keeps the one catching the
    most gold out-of-scope val texts."""
    from modeling.engine.evaluation.ood import OOD_KINDS

    yva, ytr = split.yva, split.ytr
    in_scope = (yva != fallback_index) & np.isin(yva, np.unique(ytr))
    no_features = split.train_features is None or split.val_features is None
    if calibration.ood_kind == "none" or no_features or not in_scope.any():
        return [(None, None, None)]
    candidates = []
    for kind in OOD_KINDS if calibration.ood_kind == "auto" else (calibration.ood_kind,):
        scorer = OodScorer.fit(kind, split.train_features, ytr, exclude=(fallback_index,))
        if calibration.ood_with_probability:
            # The model's own belief in the fallback joins the score only when it learnt the fallback from examples.
            trained_fallback = fallback_index if fallback_index in set(ytr.tolist()) else None
            scorer.with_probability(
                split.val_features[in_scope],
                val_probs[in_scope],
                _guard_share(calibration),
                fallback_index=trained_fallback,
            )
        scores = scorer.combined(split.val_features, val_probs)
        candidates.append((scorer, scores, choose_ood_threshold(scores, in_scope, calibration.ood_in_scope_loss)))
    return candidates


def _threshold_on_kept(
    probs: np.ndarray, y: np.ndarray, kept: np.ndarray, fallback_index: int, calibration: CalibrationParams
) -> ThresholdChoice:
    """Tau chosen on the texts the out-of-scope score keeps, so the owner's target holds for what is answered;
    a coverage target is scaled up for the share the score already turned away."""
    target = calibration.abstain_target
    if calibration.abstain_target_kind == "coverage" and kept.any():
        target = min(1.0, target * len(kept) / kept.sum())
    if not kept.any() or len(np.unique(y[kept])) < 2:
        kept = np.ones(len(y), dtype=bool)
    choice = choose_threshold(
        probs[kept],
        y[kept],
        calibration.abstain_target_kind,
        target,
        calibration.per_class_thresholds,
        fallback_index=fallback_index,
        coverage_floor=calibration.coverage_floor,
    )
    choice.target = float(calibration.abstain_target)
    return choice


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays, dataclasses and pydantic models → plain JSON types (NaN/inf → None)."""
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
