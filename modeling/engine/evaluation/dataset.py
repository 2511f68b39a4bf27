"""Score a route on labelled JSONL files (train / val / test): train a version in a temporary folder, load it
back through ``Predictor.load`` as serving does, and measure test. What ``manage.py evaluate_dataset`` and
``benchmarks/routes.py`` call; no Django.

The fallback label: the dataset's out-of-scope label when one is named (``fallback_label``); else 其他 when
the files use it (Chinese data often carries 其他 as an ordinary label with many examples: it is the
fallback, trained as a class, and uncertain texts go to it too); else 其他 is added as a class without
examples, the answer for abstained texts."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modeling.engine.cascade import COMBINE_RULES, DEFAULT_RULE, align, below, combine, compatible, run_cascade
from modeling.engine.evaluation.metrics import classification_report, evaluate_probabilities
from modeling.engine.files import read_jsonl
from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import Examples, FitContext, LabelInfo, LoadContext, Taxonomy, encode_labels
from modeling.engine.versions import CalibrationParams, Predictor, train_version

FALLBACK_KEY = "其他"
FALLBACK_DATA_PRECISION_TARGET = 0.97
# With out-of-scope examples in train: the most out-of-scope texts caught at this in-scope accuracy on val.
FALLBACK_DATA_IN_SCOPE_ACCURACY_TARGET = 0.95
TIMED_TEXTS = 200  # texts the one-at-a-time predict latency is measured on


def read_examples(path: Path) -> Examples:
    rows = list(read_jsonl(path, required=("text", "label")))
    return Examples([str(r["text"]) for r in rows], [str(r["label"]) for r in rows])


@dataclass
class Splits:
    train: Examples | None
    val: Examples | None
    test: Examples


def read_splits(train: Path | None, val: Path | None, test: Path) -> Splits:
    return Splits(
        read_examples(train) if train is not None else None,
        read_examples(val) if val is not None else None,
        read_examples(test),
    )


def label_set(splits: Splits, fallback_label: str | None, taxonomy: Taxonomy | None) -> tuple[list[str], str]:
    """(label keys in logit order, fallback key): the taxonomy's when given, else every label the files use."""
    if taxonomy is not None:
        return [label.key for label in taxonomy.labels], taxonomy.fallback_key
    seen = sorted({label for part in (splits.train, splits.val, splits.test) if part for label in part.labels})
    fallback = fallback_label or FALLBACK_KEY
    return [*[k for k in seen if k != fallback], fallback], fallback


def default_calibration(data: dict[str, Any], fallback_label: str | None, fallback_trained: bool) -> CalibrationParams:
    """The files carry real out-of-scope texts and an answered one counts as an error. With out-of-scope
    examples in train, catch as many as in-scope accuracy >= 0.95 allows; without, hold answered texts to a
    stricter precision than the app's default so out-of-scope texts fall below tau."""
    values = dict(data)
    if fallback_label and "abstain_target_kind" not in values:
        if fallback_trained:
            values.update(abstain_target_kind="in_scope_acc")
            values.setdefault("abstain_target", FALLBACK_DATA_IN_SCOPE_ACCURACY_TARGET)
        else:
            values.update(abstain_target_kind="precision")
            values.setdefault("abstain_target", FALLBACK_DATA_PRECISION_TARGET)
    return CalibrationParams(**values)


@dataclass
class Trained:
    """A route's version trained on the splits, and that version loaded back as serving loads it."""

    version: Any
    predictor: Predictor
    train_seconds: float
    fallback_label: str | None


def train_on_files(
    route_name: str,
    splits: Splits,
    *,
    params: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    fallback_label: str | None = None,
    taxonomy: Taxonomy | None = None,
    budget_minutes: float | None = None,
    model_root: Path | None = None,
    cache_dir: Path | None = None,
    threads: int = 0,
    extras: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> Trained:
    route = get_route(route_name)
    route_params = parse_params(route_name, params)
    used = {label for part in (splits.train, splits.val, splits.test) if part for label in part.labels}
    if fallback_label is None and taxonomy is None and FALLBACK_KEY in used:
        fallback_label = FALLBACK_KEY
        log(f"the dataset's label {FALLBACK_KEY!r} is used as the fallback label")
    keys, fallback = label_set(splits, fallback_label, taxonomy)
    taxonomy = taxonomy or Taxonomy(tuple(LabelInfo(key=k, name=k) for k in keys), fallback)
    fallback_trained = splits.train is not None and fallback in set(splits.train.labels)
    cal = default_calibration(calibration or {}, fallback_label, fallback_trained)
    ctx = FitContext(
        label_keys=keys,
        taxonomy=taxonomy,
        model_root=model_root,
        cache_dir=cache_dir,
        threads=threads,
        extras=dict(extras or {}),
    )
    with tempfile.TemporaryDirectory(prefix="sceneclf-eval-") as tmp:
        started = time.perf_counter()
        if (splits.train is None or splits.val is None) and route.needs_training:
            raise ValueError(f"route {route_name!r} trains: --train and --val are needed")
        version = train_version(
            route_name,
            route_params,
            splits.train or Examples([], []),
            splits.val or Examples([], []),
            replace(ctx, checkpoint_dir=Path(tmp) / "checkpoint"),
            cal,
            budget_minutes=budget_minutes,
        )
        train_seconds = time.perf_counter() - started
        version.save(Path(tmp) / "version")
        # One torch thread, as serving runs (PREDICT_TORCH_THREADS): the latency measured is the served one.
        predictor = Predictor.load(Path(tmp) / "version", LoadContext(model_root=model_root, cache_dir=None, threads=1))
    return Trained(version, predictor, train_seconds, fallback_label)


def evaluate_files(
    route_name: str, splits: Splits, *, timed_texts: int = TIMED_TEXTS, **options: Any
) -> tuple[dict[str, Any], Predictor]:
    """(the result dict, the loaded predictor) of one route on the splits; options as ``train_on_files``;
    ``timed_texts`` test texts are timed one per call."""
    trained = train_on_files(route_name, splits, **options)
    test = trained.predictor.evaluate(splits.test)
    latency = predict_ms_per_text(trained.predictor, splits.test.texts, timed_texts)
    result = summary(route_name, trained.version, test, trained.train_seconds, latency, splits, trained.fallback_label)
    return result, trained.predictor


def predict_ms_per_text(predictor: Predictor, texts: list[str], timed_texts: int = TIMED_TEXTS) -> float:
    """Mean latency of one text per call (as an API client sends them), over the first ``timed_texts`` texts."""
    sample = texts[:timed_texts]
    if not sample:
        return 0.0
    predictor.predict(sample[:1])  # warm-up
    started = time.perf_counter()
    for text in sample:
        predictor.predict([text])
    return round((time.perf_counter() - started) * 1000.0 / len(sample), 3)


def summary(
    route_name: str,
    version: Any,
    test: dict[str, Any],
    train_seconds: float,
    latency: float,
    splits: Splits,
    fallback_label: str | None,
) -> dict[str, Any]:
    metrics = version.metrics
    described = version.describe()
    calibration = test.get("calibration") or {}
    abstention = test.get("abstention") or {}
    val_abstention = (metrics.get("val") or {}).get("abstention") or {}
    result: dict[str, Any] = {
        "route": route_name,
        "params": version.params.model_dump(mode="json"),
        "backbone": described.get("backbone_name") or None,
        "head": metrics.get("head_kind"),
        "n_train": len(splits.train) if splits.train else 0,
        "n_val": len(splits.val) if splits.val else 0,
        "n_test": len(splits.test),
        "label_keys": version.label_keys,
        "fallback_key": version.fallback_key,
        "accuracy": test.get("accuracy"),
        "macro_f1": test.get("macro_f1"),
        "ece_before": calibration.get("ece_before"),
        "ece_after": calibration.get("ece"),
        "temperature": version.temperature,
        "threshold": version.choice.threshold,
        "coverage": abstention.get("coverage"),
        "selective_accuracy": abstention.get("selective_accuracy"),
        "in_scope_accuracy": abstention.get("in_scope_accuracy"),
        "oos_recall": abstention.get("oos_recall"),
        "oos_precision": abstention.get("oos_precision"),
        "oos_auroc_msp": abstention.get("oos_auroc_msp"),
        "oos_auroc_score": abstention.get("oos_auroc_score"),
        "target_met_on_val": metrics.get("target_met_on_val"),
        "warning": metrics.get("abstention_warning"),
        "ood_kind": abstention.get("ood_kind"),
        "ood_threshold": abstention.get("ood_threshold"),
        "calibration_items": metrics.get("calibration_items"),
        "training_data": metrics.get("training_data"),
        "stopped_by_budget": metrics.get("stopped_by_budget"),
        "extract_texts_per_s": described.get("extract_texts_per_s"),
        "n_extracted": described.get("n_extracted"),
        "train_seconds": round(train_seconds, 3),
        "predict_ms_per_text": latency,
    }
    if fallback_label is not None:
        result["val_in_scope_accuracy"] = val_abstention.get("in_scope_accuracy")
        result["val_oos_recall"] = val_abstention.get("oos_recall")
        result["val_and_test"] = pooled(val_abstention, result["n_val"], abstention, result["n_test"])
    return result


def pooled(val: dict, n_val: int, test: dict, n_test: int) -> dict[str, float | None]:
    """In-scope accuracy and OOS recall over val and test together (val tuned the rule: optimistic there, but
    twice the out-of-scope texts of test alone)."""
    parts = [(val, n_val), (test, n_test)]
    if any(part.get("in_scope_accuracy") is None or part.get("n_oos") is None for part, _ in parts):
        return {"in_scope_accuracy": None, "oos_recall": None}
    n_in = sum(n - part["n_oos"] for part, n in parts)
    n_oos = sum(part["n_oos"] for part, _ in parts)
    correct = sum(part["in_scope_accuracy"] * (n - part["n_oos"]) for part, n in parts)
    caught = sum((part.get("oos_recall") or 0.0) * part["n_oos"] for part, _ in parts)
    return {
        "in_scope_accuracy": round(correct / n_in, 4) if n_in else None,
        "oos_recall": round(caught / n_oos, 4) if n_oos else None,
    }


SWEEP_TAUS = (0.5, 0.6, 0.7, 0.8, 0.9)
HEADLINE = ("accuracy", "macro_f1", "coverage", "selective_accuracy", "in_scope_accuracy", "oos_recall")


def evaluate_cascade(
    route_name: str,
    recheck_route: str,
    splits: Splits,
    *,
    params: dict[str, Any] | None = None,
    recheck_params: dict[str, Any] | None = None,
    tau: float | None = None,
    rule: str = DEFAULT_RULE,
    **options: Any,
) -> tuple[dict[str, Any], Predictor]:
    """The primary route trained as ``evaluate_files`` does, and ``recheck_route`` (trained on the same splits,
    or zero-shot from the taxonomy) re-checking the test texts under ``tau`` (default: the primary's
    abstention threshold). Top-level keys describe the final answers; ``cascade`` holds the share re-checked,
    the metrics before and after, and every combine rule over a sweep of tau."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {rule!r}; choose one of {', '.join(COMBINE_RULES)}")
    primary = train_on_files(route_name, splits, params=params, **options)
    recheck = train_on_files(recheck_route, splits, params=recheck_params, **options)
    first, second = primary.predictor, recheck.predictor
    missing = compatible(first.label_keys, second.label_keys)
    if missing:
        raise ValueError(f"the re-check route has labels the primary lacks: {', '.join(missing)}")
    test = splits.test
    y = encode_labels(test.labels, first.label_keys, "labels")
    scored = first.score(test.texts)
    tau = float(first.choice.threshold if tau is None else tau)
    taus = sorted({*SWEEP_TAUS, round(tau, 6)})
    pool = np.flatnonzero(below(scored.probs, max(taus)))
    started = time.perf_counter()
    rescored = np.zeros_like(scored.probs)
    if len(pool):
        rescored[pool] = align(second.score([test.texts[i] for i in pool]).probs, second.label_keys, first.label_keys)
    recheck_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(pool))
    sweep = [
        _cascade_point(first, scored, rescored, y, point_tau, point_rule)
        for point_tau in taus
        for point_rule in COMBINE_RULES
    ]
    final, rows = _cascaded(scored.probs, rescored, tau, rule)
    metrics = first.fallback_index, first.choice
    before = evaluate_probabilities(scored.probs, y, first.label_keys, *metrics, scored.probs_raw, scored.ood_scores)
    after = evaluate_probabilities(final, y, first.label_keys, *metrics, None, scored.ood_scores)
    latency = _cascade_ms_per_text(first, second, test.texts, tau, rule)
    result = summary(route_name, primary.version, after, primary.train_seconds, latency, splits, primary.fallback_label)
    result["cascade"] = {
        "route": recheck_route,
        "params": recheck.version.params.model_dump(mode="json"),
        "tau": tau,
        "rule": rule,
        "share_rechecked": round(float(rows.mean()), 4),
        "n_rechecked": int(rows.sum()),
        "before": _headline(before),
        "after": _headline(after),
        "recheck_train_seconds": round(recheck.train_seconds, 3),
        "recheck_ms_per_text": round(recheck_ms, 3),
        "rules": {point["rule"]: point for point in sweep if point["tau"] == round(tau, 6)},
        "sweep": sweep,
    }
    return result, first


def _cascaded(probs: np.ndarray, rescored: np.ndarray, tau: float, rule: str) -> tuple[np.ndarray, np.ndarray]:
    rows = below(probs, tau)
    final = np.asarray(probs, dtype=np.float64).copy()
    if rows.any():
        final[rows] = combine(rule, probs[rows], rescored[rows])
    return final, rows


def _cascade_point(
    primary: Predictor, scored: Any, rescored: np.ndarray, y: np.ndarray, tau: float, rule: str
) -> dict[str, Any]:
    """Quality of one (tau, rule): answers, abstention, and what the re-check changed."""
    final, rows = _cascaded(scored.probs, rescored, tau, rule)
    before, after = scored.probs.argmax(axis=1), final.argmax(axis=1)
    changed = rows & (before != after)
    answered = primary.choice.answered(final, scored.ood_scores)
    report = classification_report(y, after, primary.label_keys)
    return {
        "tau": round(tau, 6),
        "rule": rule,
        "share_rechecked": round(float(rows.mean()), 4),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "coverage": round(float(answered.mean()), 4),
        "selective_accuracy": round(float((after[answered] == y[answered]).mean()), 4) if answered.any() else None,
        "rechecked_accuracy_before": _share(before[rows] == y[rows]),
        "rechecked_accuracy_after": _share(after[rows] == y[rows]),
        "n_changed": int(changed.sum()),
        "changed_now_right": int((after[changed] == y[changed]).sum()),
        "changed_was_right": int((before[changed] == y[changed]).sum()),
    }


def _share(mask: np.ndarray) -> float | None:
    return round(float(mask.mean()), 4) if len(mask) else None


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    flat = {**metrics, **(metrics.get("abstention") or {})}
    return {key: flat.get(key) for key in HEADLINE if key in flat}


def _cascade_ms_per_text(primary: Predictor, recheck: Predictor, texts: list[str], tau: float, rule: str) -> float:
    """Mean latency of one text per call through the whole cascade, as ``predict_ms_per_text`` times one model."""
    sample = texts[:TIMED_TEXTS]
    if not sample:
        return 0.0
    run_cascade(primary, recheck, sample[:1], tau=tau, rule=rule)
    started = time.perf_counter()
    for text in sample:
        run_cascade(primary, recheck, [text], tau=tau, rule=rule)
    return round((time.perf_counter() - started) * 1000.0 / len(sample), 3)
