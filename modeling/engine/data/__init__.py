"""What training learns from, route-agnostic: label definitions as examples, doubtful labels, perturbations.

Every route's parameters inherit ``TrainingDataParams``; the training orchestrator calls
``prepare_training_set`` before ``Route.fit`` and records its report in the version's metrics."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from modeling.engine.routes.base import Examples, FitContext, RouteParams


class TrainingDataParams(RouteParams):
    label_definitions: bool = Field(
        False, description="Add each label's definition, rules and examples from the taxonomy as training texts."
    )
    noisy_labels: Literal["keep", "drop", "downweight"] = Field(
        "keep",
        description="What to do with train items that out-of-fold confident learning flags as mislabelled.",
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
    return train, {"n_train": len(train)}
