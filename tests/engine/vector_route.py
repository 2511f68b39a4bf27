"""A route over given feature vectors, for testing what comes after the logits (calibration, abstention,
the out-of-scope score) on synthetic features whose geometry a test controls.

A text is a key into ``VECTORS``: ``texts_for(x)`` registers each row and returns its text, optionally
carrying a keyword so the hybrid head's n-gram part has something to read. The head is the real one
(routes/heads.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from modeling.engine import routes
from modeling.engine.data import TrainingDataParams
from modeling.engine.files import read_json, write_json
from modeling.engine.routes.base import Encoded, Examples, FitContext, LoadContext, encode_labels
from modeling.engine.routes.heads import HeadConfig, HeadInputs, TrainedHead, load_head, train_head
from modeling.engine.versions import CalibrationParams, TrainedVersion, train_version

NAME = "vectors"
VECTORS: dict[str, np.ndarray] = {}
_ids = itertools.count()


def texts_for(x: np.ndarray, words: Sequence[str] | None = None) -> list[str]:
    texts = []
    for i, row in enumerate(np.asarray(x, dtype=np.float32)):
        text = f"{words[i] if words is not None else ''}#{next(_ids)}"
        VECTORS[text] = row
        texts.append(text)
    return texts


class VectorParams(TrainingDataParams):
    head_kind: Literal["linear", "mlp", "sklearn_lr"] = "linear"
    hybrid: bool = False
    loss: Literal["weighted", "focal", "none"] = "weighted"
    hidden_dim: int = 512


class FittedVectors:
    def __init__(self, label_keys: list[str], head: TrainedHead) -> None:
        self.label_keys, self.head = label_keys, head

    def encode(self, texts: Sequence[str]) -> Encoded:
        features = np.stack([VECTORS[t] for t in texts]) if len(texts) else np.zeros((0, 1), np.float32)
        return Encoded(self.head.logits(HeadInputs(features, list(texts))), features)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts).logits

    def save(self, folder: Path) -> None:
        self.head.save(Path(folder) / "head")
        write_json(Path(folder) / "keys.json", self.label_keys)

    def describe(self) -> dict[str, Any]:
        return {"head_kind": self.head.kind}


class VectorRoute:
    name: ClassVar[str] = NAME
    title: ClassVar[str] = "Given vectors + head (tests)"
    help: ClassVar[str] = "Reads each text's vector from a table the test filled."
    Params: ClassVar[type[VectorParams]] = VectorParams
    needs_training: ClassVar[bool] = True
    warm_starts: ClassVar[bool] = False

    def fit(self, train: Examples, val: Examples, params: VectorParams, ctx: FitContext) -> FittedVectors:
        def inputs(examples: Examples) -> HeadInputs:
            return HeadInputs(np.stack([VECTORS[t] for t in examples.texts]), examples.texts)

        kind, feature_kind = ("hybrid", params.head_kind) if params.hybrid else (params.head_kind, "linear")
        config = HeadConfig(kind=kind, feature_kind=feature_kind, loss=params.loss, hidden_dim=params.hidden_dim)
        stage = ctx.stage("fit")
        head = train_head(
            inputs(train),
            encode_labels(train.labels, ctx.label_keys),
            inputs(val),
            encode_labels(val.labels, ctx.label_keys),
            len(ctx.label_keys),
            config,
            ctx.seed,
            lambda fraction, message: stage(fraction, message),
            ctx.should_stop,
            ctx.deadline,
        )
        return FittedVectors(list(ctx.label_keys), head)

    def load(self, folder: Path, ctx: LoadContext) -> FittedVectors:
        return FittedVectors(read_json(Path(folder) / "keys.json"), load_head(Path(folder) / "head"))


def install() -> None:
    routes.ROUTE_MODULES.setdefault(NAME, __name__)
    routes.register(VectorRoute())


def fit(
    train_texts: list[str],
    y_train: Sequence,
    val_texts: list[str],
    y_val: Sequence,
    options: dict[str, Any],
    keys: list[str],
    fallback: str,
    **ctx_options: Any,
) -> TrainedVersion:
    """train_version on the vectors route; ``options`` mixes route and calibration params, as a run's do."""
    from modeling.engine.routes.base import Taxonomy

    install()
    calibration_keys = set(CalibrationParams.model_fields)
    calibration = CalibrationParams(**{k: v for k, v in options.items() if k in calibration_keys})
    params = {k: v for k, v in options.items() if k not in calibration_keys}
    ctx = FitContext(label_keys=list(keys), taxonomy=Taxonomy.from_keys(keys, fallback), **ctx_options)

    def as_keys(y: Sequence) -> list[str]:
        return [keys[int(v)] if isinstance(v, int | np.integer) else v for v in y]

    train, val = Examples(train_texts, as_keys(y_train)), Examples(val_texts, as_keys(y_val))
    return train_version(NAME, params, train, val, ctx, calibration)


install()


# The label check (quality.out_of_fold through services.label_quality) over these vectors: the features a
# test controls, under the head the real check uses (an unweighted scikit-learn logistic regression).
LABEL_CHECK: dict[str, Any] = {"route": NAME, "params": {"head_kind": "sklearn_lr", "loss": "none"}}
