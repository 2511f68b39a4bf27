"""What training learns from, route-agnostic: label definitions as examples, doubtful labels, perturbations.

Every route's parameters inherit ``TrainingDataParams``; the training orchestrator calls
``prepare_training_set`` before ``Route.fit`` and records its report in the version's metrics. Only the train
set changes: validation stays as labelled, so early stopping, calibration and thresholds see real data.

Order: doubtful labels are found on the train items as given (drop or down-weight), perturbed copies are
drawn from what is left (each copy keeps its source's label and weight), then the taxonomy's texts are added.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import Field

from modeling.engine.data.augment import augmented_copies, copy_counts
from modeling.engine.data.definitions import definition_texts
from modeling.engine.routes.base import Examples, FitContext, RouteParams

# ctx.extras key: frozen features of the train texts, row-aligned, for routes that have them already.
TRAIN_FEATURES = "train_features"


class TrainingDataParams(RouteParams):
    label_definitions: bool = Field(
        False,
        description="Add each label's name, definition, rules and examples from the taxonomy as training texts.",
    )
    definition_weight: float = Field(
        1.0, gt=0.0, le=10.0, description="Training weight of each text taken from the taxonomy."
    )
    noisy_labels: Literal["keep", "drop", "downweight"] = Field(
        "keep",
        description="What to do with train items that out-of-fold confident learning flags as mislabelled.",
    )
    noisy_weight: float = Field(
        0.5, gt=0.0, lt=1.0, description="Training weight of a flagged item when noisy_labels is downweight."
    )
    augment: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="Share of perturbed copies (typos, noise, truncation, concatenation) added to the train set.",
    )


def prepare_training_set(
    train: Examples, ctx: FitContext, params: TrainingDataParams
) -> tuple[Examples, dict[str, Any]]:
    """The train set the route fits on, and a JSON-able report of what was added, dropped or down-weighted."""
    report: dict[str, Any] = {"n_given": len(train)}
    texts, labels = list(train.texts), list(train.labels)
    weights = np.ones(len(train)) if train.weights is None else np.asarray(train.weights, dtype=np.float64).copy()
    if params.noisy_labels != "keep":
        texts, labels, weights, report["noisy_labels"] = _handle_noise(texts, labels, weights, ctx, params)
    if params.augment > 0:
        copies = augmented_copies(texts, labels, params.augment, ctx.seed)
        texts += [c.text for c in copies]
        labels += [labels[c.source] for c in copies]
        weights = np.concatenate([weights, weights[[c.source for c in copies]]])
        report["augment"] = {"added": len(copies), "by_perturbation": copy_counts(copies)}
    if params.label_definitions:
        extra = definition_texts(ctx.taxonomy, ctx.label_keys)
        texts += [d.text for d in extra]
        labels += [d.label for d in extra]
        weights = np.concatenate([weights, np.full(len(extra), params.definition_weight)])
        report["label_definitions"] = {"added": len(extra), "by_source": dict(Counter(d.source for d in extra))}
    report["n_train"] = len(texts)
    uniform = bool(np.all(weights == 1.0))
    return Examples(texts, labels, None if uniform else weights.astype(np.float32)), report


def _handle_noise(
    texts: list[str], labels: list[str], weights: np.ndarray, ctx: FitContext, params: TrainingDataParams
) -> tuple[list[str], list[str], np.ndarray, dict[str, Any]]:
    # cleanlab and the out-of-fold models load only when a route asks for them, not with every Params class.
    from modeling.engine.data.noise import flag_label_issues

    flags = flag_label_issues(texts, labels, ctx.seed, ctx.extras.get(TRAIN_FEATURES))
    info: dict[str, Any] = {
        "action": params.noisy_labels,
        "signal": flags.signal,
        "flagged": int(flags.flagged.sum()),
        "flagged_per_label": flags.per_label(labels),
    }
    if flags.skipped:
        info["skipped"] = flags.skipped
    if params.noisy_labels == "drop":
        keep = np.flatnonzero(~flags.flagged)
        return [texts[i] for i in keep], [labels[i] for i in keep], weights[keep], info
    weights = np.where(flags.flagged, weights * params.noisy_weight, weights)
    return texts, labels, weights, info
