"""Route ``tfidf``: character 1-3 grams + word n-grams and a logistic regression. No backbone, no
features for the out-of-scope score; the baseline any learnt route must beat, and a fallback on a machine
without weight packs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from modeling.engine.data import TrainingDataParams
from modeling.engine.files import read_json, write_json
from modeling.engine.routes import register
from modeling.engine.routes.base import Encoded, Examples, FitContext, LoadContext, encode_labels
from modeling.engine.routes.heads import HeadConfig, HeadInputs, TrainedHead, load_head, train_head
from modeling.engine.routes.text_features import TfidfConfig

HEAD_DIR = "head"
TFIDF_FILE = "tfidf.json"


class TfidfParams(TrainingDataParams):
    loss: Literal["weighted", "none"] = Field(
        "weighted", description="weighted: class weights 1/log(1.02 + share); none: plain."
    )
    tfidf_c: float = Field(10.0, gt=0.0, description="Inverse regularisation of the logistic regression.")
    max_iter: int = Field(1000, ge=10, le=100000, description="Solver iterations.")
    char_ngram_max: int = Field(3, ge=1, le=6, description="Longest character n-gram.")
    word_ngram_max: int = Field(2, ge=1, le=4, description="Longest word n-gram.")
    max_char_features: int = Field(100_000, ge=100, le=2_000_000, description="Character n-gram vocabulary cap.")
    max_word_features: int = Field(30_000, ge=100, le=2_000_000, description="Word n-gram vocabulary cap.")
    min_df: int = Field(1, ge=1, le=100, description="Minimum document frequency of an n-gram.")

    def head_config(self) -> HeadConfig:
        tfidf = TfidfConfig(
            char_ngram_max=self.char_ngram_max,
            word_ngram_max=self.word_ngram_max,
            max_char_features=self.max_char_features,
            max_word_features=self.max_word_features,
            min_df=self.min_df,
        )
        return HeadConfig(kind="tfidf", loss=self.loss, tfidf_c=self.tfidf_c, max_iter=self.max_iter, tfidf=tfidf)


class FittedTfidf:
    def __init__(self, label_keys: list[str], head: TrainedHead) -> None:
        self.label_keys, self.head = label_keys, head

    def encode(self, texts: Sequence[str]) -> Encoded:
        return Encoded(self.logits(texts), None)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.logits(HeadInputs(None, list(texts)))

    def save(self, folder: Path) -> None:
        self.head.save(Path(folder) / HEAD_DIR)
        write_json(Path(folder) / TFIDF_FILE, {"label_keys": self.label_keys})

    def describe(self) -> dict[str, Any]:
        return {"backbone_name": "", "backbone_fingerprint": "", "head_kind": "tfidf"}


class TfidfRoute:
    name: ClassVar[str] = "tfidf"
    title: ClassVar[str] = "TF-IDF baseline"
    help: ClassVar[str] = (
        "Character and word n-grams with a logistic regression: no backbone, trains in seconds. A baseline, "
        "or a start on a machine without weight packs; no out-of-scope score beyond the probability."
    )
    Params: ClassVar[type[TfidfParams]] = TfidfParams
    needs_training: ClassVar[bool] = True
    warm_starts: ClassVar[bool] = False

    def fit(self, train: Examples, val: Examples, params: TfidfParams, ctx: FitContext) -> FittedTfidf:
        fit = ctx.stage("fit")
        fit(0.0, "tfidf")
        head = train_head(
            HeadInputs(None, train.texts, train.weights),
            encode_labels(train.labels, ctx.label_keys, "train"),
            HeadInputs(None, val.texts),
            encode_labels(val.labels, ctx.label_keys, "val"),
            len(ctx.label_keys),
            params.head_config(),
            ctx.seed,
            lambda fraction, message: fit(fraction, message),
            ctx.should_stop,
        )
        return FittedTfidf(list(ctx.label_keys), head)

    def load(self, folder: Path, ctx: LoadContext) -> FittedTfidf:
        folder = Path(folder)
        return FittedTfidf(list(read_json(folder / TFIDF_FILE)["label_keys"]), load_head(folder / HEAD_DIR))


register(TfidfRoute())
