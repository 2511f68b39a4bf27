"""Route ``probe`` (route 1): frozen backbone features, then a small head; by default a linear probe
ensembled with a character n-gram TF-IDF model (the hybrid head, ``routes/heads.py``).

Features come from ``backbones/features`` through the feature cache, so a retrain on seen texts extracts
nothing. ``encode`` returns the features too: the out-of-scope score and the nearest-example explanations
work in that space."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
from modeling.engine.backbones.packs import BackboneError
from modeling.engine.backbones.recent import RecentFeatures
from modeling.engine.backbones.specs import BackboneSpec, resolve_backbone
from modeling.engine.data import TrainingDataParams
from modeling.engine.files import read_json, write_json
from modeling.engine.routes import register
from modeling.engine.routes.base import (
    Encoded,
    Examples,
    FitContext,
    LoadContext,
    ParamsError,
    encode_labels,
)
from modeling.engine.routes.heads import HeadConfig, HeadInputs, TrainedHead, load_head, train_head

DEFAULT_BACKBONE = "multilingual-e5-small"
HEAD_DIR = "head"
PROBE_FILE = "probe.json"
MAX_LEN_STEP = 16


class ProbeParams(TrainingDataParams):
    backbone: str | None = Field(
        None, description="Backbone pack name, local folder, .gguf file or hub id; empty: the app's default."
    )
    pooling: Literal["mean", "last"] | None = Field(None, description="Token pooling; empty: the backbone's default.")
    layer: Literal["last", "half"] | int | None = Field(
        None, description="Hidden layer to read: last, half or an index; empty: the backbone's default."
    )
    max_len: int | None = Field(
        None,
        ge=2,
        le=4096,
        description="Tokens per text; empty: the P95 of the training lengths, rounded up to 16, capped.",
    )
    max_len_cap: int = Field(256, ge=2, le=4096, description="Upper bound of the chosen max_len.")
    batch_tokens: int = Field(8192, ge=64, le=65536, description="Padded tokens per extraction batch (speed only).")
    dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Extraction precision; auto picks bf16 where this CPU runs it faster."
    )
    head_kind: Literal["linear", "mlp", "sklearn_lr"] = Field("linear", description="The head on the features.")
    hybrid: bool = Field(True, description="Add a character/word n-gram TF-IDF model to the feature head.")
    hybrid_mode: Literal["ensemble", "concat"] = Field(
        "ensemble", description="ensemble: logit mix with a weight tuned on val; concat: one LR on both."
    )
    loss: Literal["weighted", "focal", "none"] = Field(
        "weighted", description="weighted: class weights 1/log(1.02 + share); focal: gamma focal_gamma."
    )
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0, description="Focal loss gamma.")
    hidden_dim: int = Field(512, ge=8, le=8192, description="Hidden units of the mlp head.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout of the mlp head.")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Learning rate of the mlp head.")
    linear_lr: float = Field(1e-3, gt=0.0, le=1.0, description="Learning rate of the linear head.")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay.")
    batch_size: int = Field(64, ge=1, le=8192, description="Head training batch size.")
    max_epochs: int = Field(
        200, ge=1, le=1_000_000, description="Epoch cap; early stopping on val macro-F1 ends sooner."
    )
    patience: int = Field(3, ge=1, le=1_000_000, description="Epochs without a val macro-F1 gain before stopping.")
    sklearn_c: float = Field(1.0, gt=0.0, description="Inverse regularisation of the sklearn_lr head.")
    tfidf_c: float = Field(10.0, gt=0.0, description="Inverse regularisation of the TF-IDF part.")

    def head_config(self) -> HeadConfig:
        kind, feature_kind = ("hybrid", self.head_kind) if self.hybrid else (self.head_kind, "linear")
        options = self.model_dump(include=set(HEAD_OPTION_NAMES))
        return HeadConfig(kind=kind, feature_kind=feature_kind, hybrid_mode=self.hybrid_mode, **options)

    def feature_overrides(self) -> dict[str, Any]:
        values = {"pooling": self.pooling, "layer": self.layer, "dtype": self.dtype}
        values.update(max_len_cap=self.max_len_cap, batch_tokens=self.batch_tokens)
        return {k: v for k, v in values.items() if v is not None}


HEAD_OPTION_NAMES = (
    "loss",
    "focal_gamma",
    "hidden_dim",
    "dropout",
    "lr",
    "linear_lr",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "patience",
    "sklearn_c",
    "tfidf_c",
)


def resolve_spec(backbone: str | None, ctx_root: Path | None, extras: dict[str, Any]) -> BackboneSpec:
    name = backbone or extras.get("default_backbone") or DEFAULT_BACKBONE
    if ctx_root is None:
        raise ParamsError("the probe route needs a model root (where backbone packs are installed)", key="backbone")
    return resolve_backbone(name, ctx_root)


def build_extractor(
    params: ProbeParams, spec: BackboneSpec, train_texts: Sequence[str], threads: int = 0
) -> FeatureExtractor:
    """The extractor training uses. Its max_len is the explicit one, or the P95 of the training lengths
    rounded up to 16 and capped: rounding keeps the value (and so the feature-cache key) steady while the
    training set grows a little, so a retrain on already-seen items extracts nothing."""
    values = {"pooling": spec.default_pooling or "mean", "layer": spec.default_layer or "last"}
    values.update(params.feature_overrides(), threads=threads, max_len=params.max_len)
    config = FeatureConfig(**values)
    if config.max_len is None:
        config = replace(config, max_len=int(config.max_len_cap))
    extractor = FeatureExtractor(spec, config)
    if params.max_len is None and train_texts:
        p95 = int(extractor.choose_max_len(list(train_texts)))
        extractor.max_len = int(min(config.max_len_cap, -(-p95 // MAX_LEN_STEP) * MAX_LEN_STEP))
    return extractor


class FeatureSource:
    """Features of texts from one extractor, through the feature cache when there is one."""

    def __init__(
        self, extractor: FeatureExtractor, cache_dir: Path | None, recent: RecentFeatures | None = None
    ) -> None:
        self.extractor = extractor
        self.cache = None
        if cache_dir is not None:
            from modeling.engine.backbones.cache import FeatureCache

            self.cache = FeatureCache(cache_dir)
        self.recent = recent
        self.last_extracted = 0

    def features(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.extractor.feature_dim), dtype=np.float32)
        if self.cache is None and self.recent is not None:
            return self._through_recent(texts)
        if self.cache is None:
            self.last_extracted = len(texts)
            return np.asarray(self.extractor.encode(texts, progress=progress), dtype=np.float32)
        from modeling.engine.backbones.cache import cached_encode

        matrix, self.last_extracted = cached_encode(self.extractor, texts, None, self.cache, progress)
        return np.asarray(matrix, dtype=np.float32)

    def _through_recent(self, texts: list[str]) -> np.ndarray:
        assert self.recent is not None
        keys, found = self.recent.lookup(self.identity, texts)
        missing = [i for i in range(len(texts)) if i not in found]
        self.last_extracted = len(missing)
        matrix = np.empty((len(texts), self.extractor.feature_dim), dtype=np.float32)
        if missing:
            computed = np.asarray(self.extractor.encode([texts[i] for i in missing]), dtype=np.float32)
            matrix[missing] = computed
            self.recent.store([keys[i] for i in missing], computed)
        for i, row in found.items():
            matrix[i] = row
        return matrix

    @cached_property
    def identity(self) -> str:
        """What decides the vectors: two sources with the same identity compute the same features."""
        spec = self.extractor.spec
        return json.dumps([spec.name, spec.fingerprint, self.record()], sort_keys=True, default=str)

    def with_extractor(self, extractor: FeatureExtractor) -> FeatureSource:
        """Another extractor's features through this source's cache (the cache key holds the dtype)."""
        source = FeatureSource(extractor, None, self.recent)
        source.cache = self.cache
        return source

    def record(self) -> dict[str, Any]:
        """What serving needs to compute the same features (dtype and max_len as resolved)."""
        config = {**asdict(self.extractor.config), "dtype": self.extractor.dtype, "max_len": self.extractor.max_len}
        config.pop("threads", None)
        return config


class FittedProbe:
    def __init__(
        self, label_keys: list[str], head: TrainedHead, source: FeatureSource, backbone_ref: str, info: dict
    ) -> None:
        self.label_keys, self.head, self.source, self.backbone_ref, self.info = (
            label_keys,
            head,
            source,
            backbone_ref,
            info,
        )

    def encode(self, texts: Sequence[str]) -> Encoded:
        features = self.source.features(texts)
        return Encoded(self.head.logits(HeadInputs(features, list(texts))), features)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts).logits

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        self.head.save(folder / HEAD_DIR)
        write_json(
            folder / PROBE_FILE,
            {
                "backbone_ref": self.backbone_ref,
                "label_keys": self.label_keys,
                "feature_config": self.source.record(),
                **self.describe(),
            },
        )

    def int8_variant(self) -> FittedProbe | None:
        """The same head on features from INT8 linear layers, or None where the backbone cannot run them."""
        extractor = self.source.extractor
        if extractor.dtype == "int8" or not extractor.config.fast_forward or extractor.spec.kind != "encoder":
            return None
        config = replace(extractor.config, dtype="int8", max_len=extractor.max_len)
        try:
            int8 = FeatureExtractor(extractor.spec, config)
        except BackboneError:
            return None
        return FittedProbe(self.label_keys, self.head, self.source.with_extractor(int8), self.backbone_ref, self.info)

    def int8_pays_here(self, int8: FittedProbe) -> bool:
        """The process's timing probe: INT8 linear layers against this version's own dtype, on this CPU."""
        import torch

        from modeling.engine.serving_precision import int8_is_faster

        ref, candidate = self.source.extractor, int8.source.extractor
        return int8_is_faster(ref.spec.path, ref.dtype, candidate.model, ref.model, torch.get_num_threads())

    def describe(self) -> dict[str, Any]:
        spec = self.source.extractor.spec
        return {
            "backbone_name": spec.name,
            "backbone_fingerprint": spec.fingerprint,
            "feature_dim": int(self.source.extractor.feature_dim),
            "dtype": self.source.extractor.dtype,
            "max_len": int(self.source.extractor.max_len),
            "head_kind": self.head.kind,
            "ensemble_alpha": self.head.alpha,
            "best_epoch": self.head.best_epoch,
            **self.info,
        }


class ProbeRoute:
    name: ClassVar[str] = "probe"
    title: ClassVar[str] = "Route 1: frozen features + head"
    help: ClassVar[str] = (
        "Frozen multilingual-e5 features with a linear head and a character n-gram ensemble. Trains in "
        "seconds once features are cached; the default, and the baseline every other route must beat."
    )
    Params: ClassVar[type[ProbeParams]] = ProbeParams
    needs_training: ClassVar[bool] = True
    warm_starts: ClassVar[bool] = False

    def fit(self, train: Examples, val: Examples, params: ProbeParams, ctx: FitContext) -> FittedProbe:
        spec = resolve_spec(params.backbone, ctx.model_root, ctx.extras)
        source = FeatureSource(build_extractor(params, spec, train.texts, ctx.threads), ctx.cache_dir)
        extract = ctx.stage("extract")
        n_all = len(train) + len(val)
        started = time.perf_counter()
        xtr = source.features(train.texts, lambda done, total: extract(done / max(total, 1) * len(train) / n_all))
        n_extracted = source.last_extracted
        xva = source.features(
            val.texts, lambda done, total: extract((len(train) + done / max(total, 1) * len(val)) / n_all)
        )
        seconds = time.perf_counter() - started
        n_extracted += source.last_extracted
        extract(1.0, f"{n_all} texts, {n_extracted} extracted, rest from cache")
        ctx.check_cancel()
        fit = ctx.stage("fit")
        head = train_head(
            HeadInputs(xtr, train.texts, train.weights),
            encode_labels(train.labels, ctx.label_keys, "train"),
            HeadInputs(xva, val.texts),
            encode_labels(val.labels, ctx.label_keys, "val"),
            len(ctx.label_keys),
            params.head_config(),
            ctx.seed,
            lambda fraction, message: fit(fraction, message),
            ctx.should_stop,
            ctx.deadline,
        )
        info = {"n_texts": n_all, "n_extracted": n_extracted, "extract_seconds": round(seconds, 3)}
        if n_extracted:
            info["extract_texts_per_s"] = round(n_extracted / max(seconds, 1e-9), 1)
        ref = params.backbone or ctx.extras.get("default_backbone") or DEFAULT_BACKBONE
        return FittedProbe(list(ctx.label_keys), head, source, ref, info)

    def load(self, folder: Path, ctx: LoadContext) -> FittedProbe:
        folder = Path(folder)
        record = read_json(folder / PROBE_FILE)
        if ctx.model_root is None:
            raise ParamsError("loading a probe version needs the model root", key="backbone")
        spec = resolve_backbone(record["backbone_ref"], ctx.model_root)
        if spec.fingerprint != record["backbone_fingerprint"]:
            raise BackboneMismatch(spec.name, spec.fingerprint, record["backbone_fingerprint"])
        config = FeatureConfig(**{**record["feature_config"], "threads": ctx.threads})
        source = FeatureSource(FeatureExtractor(spec, config), ctx.cache_dir, ctx.recent)
        info = {k: record[k] for k in ("n_texts", "n_extracted", "extract_seconds") if k in record}
        return FittedProbe(
            list(record["label_keys"]), load_head(folder / HEAD_DIR), source, record["backbone_ref"], info
        )


class BackboneMismatch(Exception):
    """The installed backbone is not the one a version was trained on."""

    def __init__(self, name: str, installed: str, trained: str) -> None:
        super().__init__(
            f"the installed backbone {name!r} (fingerprint {installed[:12]}) is not the one this version was "
            f"trained on ({trained[:12]}); reinstall it or retrain"
        )
        self.name, self.installed, self.trained = name, installed, trained


register(ProbeRoute())
