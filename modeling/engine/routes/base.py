"""The route seam: what every way of turning texts into label logits provides.

A route is one module in this package that registers a ``Route``:

- ``Params``: a pydantic model of its parameters, with defaults, ranges and help text. Unknown keys are an
  error that names the key (``extra="forbid"``).
- ``fit(train, val, params, ctx) -> Fitted``: learns from texts + label keys. ``ctx`` carries the label set,
  the taxonomy (names, definitions, examples), the model root, progress, cancel and the time budget.
- ``load(folder, ctx) -> Fitted``: reads what ``Fitted.save(folder)`` wrote.
- ``warm_starts``: whether ``fit`` continues from ``ctx.warm_start``, a previous version's route folder
  (fine-tuned routes); the others retrain from scratch on what they are given.

A ``Fitted`` turns texts into logits (n, n_classes), in the order of ``ctx.label_keys``. Everything after
the logits (temperature, abstention, out-of-scope score, metrics, plots) is route-agnostic and lives outside
this package. A route whose model has a text embedding also returns it from ``encode`` so the out-of-scope
score, nearest-example explanations and drift can use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from modeling.engine.backbones.recent import RecentFeatures
from modeling.engine.progress import ProgressEvent as ProgressEvent  # re-exported for the routes
from modeling.engine.progress import ProgressFn, StageProgress

# A route's complete checkpoint file in ``FitContext.checkpoint_dir`` ends with this; it is written under another
# name first and renamed, so a worker killed mid-write leaves no file that looks complete.
CHECKPOINT_SUFFIX = ".pt"


def holds_checkpoint(folder: Path | None) -> bool:
    """Whether a checkpoint folder holds a complete checkpoint that a fit could resume from."""
    return (
        folder is not None
        and Path(folder).is_dir()
        and any(p.suffix == CHECKPOINT_SUFFIX for p in Path(folder).iterdir())
    )


class Cancelled(Exception):
    """Raised inside ``fit`` when ``ctx.should_stop()`` turns true."""


class ParamsError(ValueError):
    """A route parameter is unknown or out of range; the message names the key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class RouteParams(BaseModel):
    """Base of every route's parameters: strict, so a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class LabelInfo:
    key: str
    name: str = ""
    definition: str = ""
    rules: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    edge_cases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Taxonomy:
    """The label set a route may read names and definitions from (label-word scoring, zero-shot, augmentation)."""

    labels: tuple[LabelInfo, ...]
    fallback_key: str

    def get(self, key: str) -> LabelInfo:
        for label in self.labels:
            if label.key == key:
                return label
        return LabelInfo(key=key, name=key)

    @classmethod
    def from_keys(cls, keys: Sequence[str], fallback_key: str) -> Taxonomy:
        return cls(tuple(LabelInfo(key=k, name=k) for k in keys), fallback_key)


@dataclass
class Examples:
    """Texts with their label keys; ``weights`` (optional, per text) down-weight doubtful labels."""

    texts: list[str]
    labels: list[str]
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if self.weights is not None and len(self.weights) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.weights)} weights")

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class FitContext:
    label_keys: list[str]  # the classes, in logit order; always includes taxonomy.fallback_key
    taxonomy: Taxonomy
    model_root: Path | None = None  # where weight packs are installed
    cache_dir: Path | None = None  # the feature cache (routes with frozen features)
    progress: ProgressFn | None = None
    should_stop: Callable[[], bool] | None = None
    deadline: float | None = None  # time.monotonic() at which training must end cleanly with what it has
    checkpoint_dir: Path | None = None  # long routes save here every N steps and resume from it when it holds one
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. "default_backbone": the app's default pack
    threads: int = 0  # torch threads for this work; 0 leaves torch's setting alone
    # A previous version's route folder to continue from (incremental retraining); routes with warm_starts read it.
    warm_start: Path | None = None

    def check_cancel(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("training cancelled")

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def stage(self, name: str) -> StageProgress:
        return StageProgress(name, self.progress)


@dataclass
class LoadContext:
    model_root: Path | None = None
    cache_dir: Path | None = None  # the feature cache; None (serving) computes features without storing them
    threads: int = 0  # torch threads per call; 0 leaves torch's setting alone
    # Serving: features the process computed last, shared by the versions it serves (backbones/recent.py).
    recent: RecentFeatures | None = None


@dataclass
class Encoded:
    logits: np.ndarray  # (n, n_classes), float
    features: np.ndarray | None = None  # (n, d) text embedding, when the route has one


class Fitted(Protocol):
    label_keys: list[str]

    def logits(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode(self, texts: Sequence[str]) -> Encoded: ...

    def save(self, folder: Path) -> None: ...

    def describe(self) -> dict[str, Any]:
        """JSON-able facts serving and the model page show. A route on one backbone names it under
        ``backbone_name`` and ``backbone_fingerprint`` (the version records both); precision, sizes."""
        ...


class Route(Protocol):
    name: ClassVar[str]
    title: ClassVar[str]  # one line for the training form
    help: ClassVar[str]  # when to pick it
    Params: ClassVar[type[RouteParams]]
    needs_training: ClassVar[bool]  # False for zero-shot
    warm_starts: ClassVar[bool]  # fit continues from ctx.warm_start (a previous version's route folder)

    def fit(self, train: Examples, val: Examples, params: RouteParams, ctx: FitContext) -> Fitted: ...

    def load(self, folder: Path, ctx: LoadContext) -> Fitted: ...


def encode_labels(labels: Sequence[str], label_keys: Sequence[str], name: str = "labels") -> np.ndarray:
    """Class indices (into ``label_keys``) of label keys, with a clear error naming unknown keys."""
    index = {key: i for i, key in enumerate(label_keys)}
    unknown = sorted({str(v) for v in labels if v not in index})
    if unknown:
        raise ValueError(f"{name}: unknown label keys {', '.join(unknown[:10])} (not in the label set)")
    return np.asarray([index[v] for v in labels], dtype=np.int64)
