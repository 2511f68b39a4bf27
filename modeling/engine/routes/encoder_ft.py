"""Route ``encoder_ft``: fine-tune the encoder pack (LoRA or full) with a linear head on mean-pooled tokens.

Training runs transformers' forward under bf16 autocast on length-bucketed batches; early stopping keeps the
epoch with the best validation macro-F1, and a time budget ends training cleanly with that epoch's weights.
A character/word n-gram TF-IDF model (route 1's hybrid text part) joins as an ensemble member, its log-prob
weight tuned on validation: it catches the one-keyword intents and the rare classes a short fine-tune misses.

Serving merges the LoRA weights into the base and runs the merged encoder through extraction's lean forward
(backbones/features.FeatureExtractor over fast_encoder.FastEncoder), so a prediction costs what route 1's does.
The saved folder holds only what changed (adapter or non-embedding weights, head, TF-IDF part) plus the base
pack's fingerprint; loading refuses a base whose weights differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score

from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor, bf16_is_faster, load_tokenizer
from modeling.engine.backbones.packs import BackboneError
from modeling.engine.backbones.specs import BackboneSpec, resolve_backbone
from modeling.engine.data import TrainingDataParams
from modeling.engine.routes import register
from modeling.engine.routes.base import Encoded, Examples, FitContext, LoadContext
from modeling.engine.routes.finetune import (
    TrainableEncoder,
    TrainableSpec,
    WarmupCosine,
    build_trainable,
    classification_loss,
    collate,
    length_batches,
    load_base,
    log_probs,
    lora_config,
    make_optimizer,
    trainable_parameters,
)
from modeling.engine.routes.heads import HeadConfig, HeadInputs, TrainedHead, _best_alpha, class_weights, load_head
from modeling.engine.routes.warm_start import encoder_warm_start

META_FILE = "encoder_ft.json"
WEIGHTS_FILE = "encoder_weights.safetensors"
HEAD_FILE = "classifier.safetensors"
TFIDF_DIR = "tfidf"
CHECKPOINT_FILE = "encoder_ft_checkpoint.pt"
FORMAT = 1
DEFAULT_BACKBONE = "multilingual-e5-small"
# 30 minutes for 10,000 texts on 2 cores, never less than 5.
BUDGET_SECONDS_PER_TEXT = 0.18
MIN_BUDGET_SECONDS = 300.0
VAL_BATCH = 128


class EncoderFtParams(TrainingDataParams):
    backbone: str = Field(DEFAULT_BACKBONE, description="Encoder pack (or local folder) to fine-tune.")
    mode: Literal["lora", "full"] = Field(
        "lora", description="LoRA adapters on query/key/value/dense, or every non-embedding weight."
    )
    lora_r: int = Field(8, ge=1, le=64, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, le=256, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, le=0.5, description="Dropout on the LoRA input.")
    encoder_dropout: float = Field(
        0.0, ge=0.0, le=0.5, description="The encoder's own hidden/attention dropout while training (slow on CPU)."
    )
    train_embeddings: bool = Field(
        False, description="Also update the word-embedding table (96M weights on e5-small; each step 3-4x slower)."
    )
    lr: float | None = Field(
        None, gt=0.0, le=1e-2, description="Encoder learning rate; default 5e-4 for LoRA, 5e-5 for full."
    )
    head_lr: float = Field(1e-3, gt=0.0, le=1e-1, description="Learning rate of the linear head.")
    weight_decay: float = Field(0.01, ge=0.0, le=0.5, description="AdamW weight decay (not on biases/norms).")
    batch_size: int = Field(32, ge=4, le=512, description="Texts per step.")
    max_epochs: int = Field(10, ge=1, le=100, description="Most epochs; early stopping usually ends sooner.")
    patience: int = Field(3, ge=1, le=20, description="Epochs without a validation macro-F1 gain before stopping.")
    warmup: float = Field(0.05, ge=0.0, le=0.5, description="Share of steps with linear warmup before the cosine.")
    loss: Literal["weighted", "focal", "none"] = Field(
        "weighted", description="Cross-entropy with class weights 1/log(1.02+share), focal loss, or plain."
    )
    focal_gamma: float = Field(2.0, ge=0.0, le=5.0, description="Focusing exponent of the focal loss.")
    sampling: Literal["shuffle", "balanced"] = Field(
        "shuffle", description="Plain shuffle, or draw texts with probability ~ 1/sqrt(class count)."
    )
    max_len: int | None = Field(
        None, ge=8, le=512, description="Token limit per text; default the 95th percentile of training lengths."
    )
    max_len_cap: int = Field(128, ge=8, le=512, description="Upper bound for the automatic max_len.")
    head_init: Literal["probe", "random"] = Field(
        "probe",
        description="Start the head from a linear probe on the frozen encoder's features (linear probing, then "
        "fine-tuning), or from random weights.",
    )
    tfidf_ensemble: bool = Field(
        True, description="Mix in a character/word n-gram TF-IDF model, its weight tuned on validation."
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="bf16 autocast where this CPU runs it faster (measured), or fixed."
    )


@dataclass
class _Data:
    ids: list[list[int]]
    lengths: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None


@dataclass
class _Outcome:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_f1: float = -1.0
    stopped_by: str = "max_epochs"
    steps: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0


class FittedEncoder:
    """The fine-tuned encoder served through the lean forward, its head, and the optional TF-IDF member."""

    def __init__(
        self,
        label_keys: list[str],
        spec: BackboneSpec,
        extractor: FeatureExtractor,
        head: tuple[np.ndarray, np.ndarray],
        tfidf: TrainedHead | None,
        alpha: float | None,
        meta: dict[str, Any],
        changed: dict[str, torch.Tensor],
    ) -> None:
        self.label_keys, self.spec, self.extractor = label_keys, spec, extractor
        self.head_weight, self.head_bias = head
        self.tfidf, self.alpha, self.meta, self.changed = tfidf, alpha, meta, changed

    def _pooled(self, texts: Sequence[str]) -> np.ndarray:
        return self.extractor.encode(list(texts))

    def _logits_from(self, pooled: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        logits = pooled @ self.head_weight.T + self.head_bias
        if self.tfidf is None or self.alpha is None:
            return logits.astype(np.float32)
        text_lp = log_probs(self.tfidf.logits(HeadInputs(texts=list(texts))))
        return ((1.0 - self.alpha) * log_probs(logits) + self.alpha * text_lp).astype(np.float32)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self._logits_from(self._pooled(texts), texts)

    def encode(self, texts: Sequence[str]) -> Encoded:
        pooled = self._pooled(texts)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return Encoded(self._logits_from(pooled, texts), (pooled / norms).astype(np.float32))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.changed.items()}, str(folder / WEIGHTS_FILE))
        head = {"weight": torch.from_numpy(self.head_weight), "bias": torch.from_numpy(self.head_bias)}
        save_file(head, str(folder / HEAD_FILE))
        if self.tfidf is not None:
            self.tfidf.save(folder / TFIDF_DIR)
        (folder / META_FILE).write_text(json.dumps(self.meta, indent=1, ensure_ascii=False), encoding="utf-8")

    def describe(self) -> dict[str, Any]:
        keys = (
            "mode", "max_len", "trainable_parameters", "best_epoch", "stopped_by", "alpha", "train_seconds",
            "warm_start",
        )  # fmt: skip
        return {
            "route": "encoder_ft",
            "backbone_name": self.spec.name,
            "backbone_fingerprint": self.spec.fingerprint,
            "precision": self.extractor.dtype,
            "feature_dim": self.extractor.feature_dim,
            **{k: self.meta.get(k) for k in keys},
        }


class EncoderFtRoute:
    name: ClassVar[str] = "encoder_ft"
    title: ClassVar[str] = "Fine-tuned encoder (LoRA) + TF-IDF"
    help: ClassVar[str] = (
        "Fine-tunes the encoder pack on your labels: the most accurate route with a few thousand labelled "
        "texts or more, at route 1's prediction speed; training takes minutes instead of seconds."
    )
    Params: ClassVar[type[EncoderFtParams]] = EncoderFtParams
    needs_training: ClassVar[bool] = True
    warm_starts: ClassVar[bool] = True

    def fit(self, train: Examples, val: Examples, params: EncoderFtParams, ctx: FitContext) -> FittedEncoder:
        return _fit(train, val, params, ctx)

    def load(self, folder: Path, ctx: LoadContext) -> FittedEncoder:
        return _load(Path(folder), ctx)


# ---------------------------------------------------------------------------------------------- fit


def _label_indices(labels: Sequence[str], keys: list[str], split: str) -> np.ndarray:
    index = {k: i for i, k in enumerate(keys)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"{split} labels not in the label set: {', '.join(unknown[:5])}")
    return np.array([index[label] for label in labels], dtype=np.int64)


def _use_bf16(precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and bf16_is_faster())


def _deadline(n_train: int, ctx: FitContext, started: float) -> float:
    # A run's budget_minutes arrives as ctx.deadline; without one the default budget scales with the data.
    if ctx.deadline is not None:
        return ctx.deadline
    return started + max(MIN_BUDGET_SECONDS, BUDGET_SECONDS_PER_TEXT * n_train)


def _tokenise(tokenizer, prefix: str, texts: Sequence[str], max_len: int) -> list[list[int]]:
    return tokenizer([prefix + t for t in texts], truncation=True, max_length=max_len)["input_ids"]


def _choose_max_len(tokenizer, prefix: str, texts: Sequence[str], params: EncoderFtParams) -> int:
    if params.max_len is not None:
        return params.max_len
    lengths = [len(x) for x in _tokenise(tokenizer, prefix, texts, params.max_len_cap)]
    return int(min(params.max_len_cap, max(8, math.ceil(np.percentile(lengths, 95)))))


def _data(tokenizer, prefix: str, examples: Examples, keys: list[str], max_len: int, split: str) -> _Data:
    ids = _tokenise(tokenizer, prefix, examples.texts, max_len)
    lengths = np.array([len(x) for x in ids])
    if len(lengths) and lengths.min() == 0:
        raise ValueError(f"{split} holds texts that produce no tokens")
    weights = None if examples.weights is None else np.asarray(examples.weights, dtype=np.float32)
    return _Data(ids, lengths, _label_indices(examples.labels, keys, split), weights)


def _balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return 1.0 / np.sqrt(counts[y])


def _fit(train: Examples, val: Examples, params: EncoderFtParams, ctx: FitContext) -> FittedEncoder:
    started = time.monotonic()
    if len(train) == 0 or len(val) == 0:
        raise ValueError("encoder_ft needs training and validation texts")
    deadline = _deadline(len(train), ctx, started)
    spec = resolve_backbone(params.backbone, ctx.model_root)
    if spec.kind != "encoder":
        raise BackboneError(f"encoder_ft fine-tunes encoders; {spec.name} is a {spec.kind}")
    keys = list(ctx.label_keys)
    progress = ctx.stage("fit")
    progress(0.0, "preparing")
    tfidf, text_val_lp = _fit_tfidf(train, val, keys, ctx) if params.tfidf_ensemble else (None, None)
    bf16 = _use_bf16(params.precision)
    trainable_spec = TrainableSpec(
        params.mode, params.lora_r, params.lora_alpha, params.lora_dropout, params.train_embeddings,
        params.encoder_dropout, bf16,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        model = build_trainable(spec.path, trainable_spec, len(keys))
        warm = None if ctx.warm_start is None else encoder_warm_start(ctx.warm_start, spec, params)
        if warm is not None:
            warm.load_encoder(model)
        tokenizer = _tokenizer(spec)
        max_len = _choose_max_len(tokenizer, spec.query_prefix, train.texts, params)
        train_data = _data(tokenizer, spec.query_prefix, train, keys, max_len, "train")
        val_data = _data(tokenizer, spec.query_prefix, val, keys, max_len, "val")
        if params.head_init == "probe":
            progress(0.0, "linear probe on the frozen encoder")
            _probe_head(model, train_data, val_data, params, ctx.seed, bf16, tokenizer.pad_token_id)
        if warm is not None:
            warm.load_head(model, keys)
        trainer = _Trainer(model, train_data, val_data, params, ctx, bf16, tokenizer.pad_token_id)
        outcome, best_state = trainer.run(deadline)
    model.load_state_dict(best_state, strict=False)
    changed = _changed_weights(model, params.mode)
    head = _head_arrays(model)
    del model
    extractor = _serving_extractor(spec, params.mode, trainable_spec, changed, max_len, params.precision)
    alpha = None
    ft_logits = extractor.encode(val.texts) @ head[0].T + head[1]
    val_y = val_data.y
    if tfidf is not None:
        alpha = _best_alpha(log_probs(ft_logits), text_val_lp, val_y)
    meta = _meta(params, spec, keys, max_len, outcome, alpha, model_trainable=_count(changed) + head[0].size)
    meta["val_macro_f1_encoder"] = round(_macro_f1(val_y, ft_logits), 6)
    meta["warm_start"] = None if warm is None else warm.report.to_dict()
    fitted = FittedEncoder(keys, spec, extractor, head, tfidf, alpha, meta, changed)
    meta["val_macro_f1"] = round(_macro_f1(val_y, fitted.logits(val.texts)), 6)
    progress(1.0, f"done: val macro-F1 {meta['val_macro_f1']:.3f}")
    return fitted


def _tokenizer(spec: BackboneSpec):
    return load_tokenizer(spec.path)


def _fit_tfidf(
    train: Examples, val: Examples, keys: list[str], ctx: FitContext
) -> tuple[TrainedHead | None, np.ndarray | None]:
    from modeling.engine.routes.heads import train_head

    y = _label_indices(train.labels, keys, "train")
    yv = _label_indices(val.labels, keys, "val")
    if len(np.unique(y)) < 2:
        raise ValueError("training needs examples of at least two classes")
    head = train_head(
        HeadInputs(texts=list(train.texts)), y, HeadInputs(texts=list(val.texts)), yv, len(keys),
        HeadConfig(kind="tfidf"), seed=ctx.seed,
    )  # fmt: skip
    ctx.check_cancel()
    return head, log_probs(head.logits(HeadInputs(texts=list(val.texts))))


def _macro_f1(y: np.ndarray, logits: np.ndarray) -> float:
    return float(f1_score(y, np.asarray(logits).argmax(axis=1), average="macro", zero_division=0))


class _Trainer:
    """Epochs of AdamW steps until early stopping, max_epochs or the deadline, keeping the best epoch's weights.

    With ``ctx.checkpoint_dir`` the state after every epoch is written there, and a run with the same
    parameters and data resumes from it (an interrupted worker loses at most one epoch)."""

    def __init__(
        self, model: TrainableEncoder, data: _Data, val: _Data, params: EncoderFtParams, ctx: FitContext, bf16: bool,
        pad_id: int,
    ) -> None:  # fmt: skip
        self.model, self.data, self.val, self.params, self.ctx = model, data, val, params, ctx
        self.bf16, self.pad_id = bf16, pad_id
        n_classes = model.head.out_features
        self.rng = np.random.default_rng(ctx.seed)
        lr = params.lr or (5e-4 if params.mode == "lora" else 5e-5)
        self.optimizer = make_optimizer(model, lr, params.head_lr, params.weight_decay)
        self.steps_per_epoch = math.ceil(len(data.y) / params.batch_size)
        self.schedule = WarmupCosine(self.optimizer, self.steps_per_epoch * params.max_epochs, params.warmup)
        self.class_weight = None if params.loss == "none" else torch.from_numpy(class_weights(data.y, n_classes))
        self.focal = params.focal_gamma if params.loss == "focal" else None
        self.sampling = _balanced_weights(data.y, n_classes) if params.sampling == "balanced" else None
        self.y = torch.from_numpy(data.y)
        self.w = None if data.weights is None else torch.from_numpy(data.weights)
        self.outcome, self.best_state, self.stale, self.reserve, self.epoch = _Outcome(), _snapshot(model), 0, 0.0, 0
        self.progress = ctx.stage("fit")

    def run(self, deadline: float) -> tuple[_Outcome, dict[str, torch.Tensor]]:
        started = time.monotonic()
        self._resume()
        if self.epoch == 0 and not self.outcome.history:  # epoch 0: the head as it starts, the floor to beat
            self._record(_evaluate(self.model, self.val, self.bf16, self.pad_id))
        while self.epoch < self.params.max_epochs:
            self.epoch += 1
            epoch_started = time.monotonic()
            out_of_time = not self._epoch(deadline)
            eval_started = time.monotonic()
            f1 = _evaluate(self.model, self.val, self.bf16, self.pad_id)
            # What must still fit after the last step: this evaluation, then merging and scoring val for the mix.
            self.reserve = 2.5 * (time.monotonic() - eval_started) + 5.0
            self._record(f1)
            if out_of_time or self.stale >= self.params.patience:
                self.outcome.stopped_by = "budget" if out_of_time else "early_stopping"
                break
            self._replan(deadline, time.monotonic() - epoch_started)
            self._save_checkpoint()
        self.outcome.train_seconds = round(self.outcome.train_seconds + time.monotonic() - started, 3)
        return self.outcome, self.best_state

    def _epoch(self, deadline: float) -> bool:
        """One pass over the batches; False when the deadline cut it short."""
        self.model.train()
        for rows in length_batches(self.data.lengths, self.params.batch_size, self.rng, self.sampling):
            self.ctx.check_cancel()
            if time.monotonic() >= deadline - self.reserve:
                return False
            self._step(rows)
            self.progress(
                self.schedule.step_count / self.schedule.total_steps, f"epoch {self.epoch}, step {self.outcome.steps}"
            )
        return True

    def _step(self, rows: np.ndarray) -> None:
        input_ids, mask = collate(self.data.ids, rows, self.pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(input_ids, mask)
        weights = None if self.w is None else self.w[rows]
        loss = classification_loss(logits, self.y[rows], self.class_weight, weights, self.focal)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.outcome.steps += 1
        self.outcome.train_tokens += int(self.data.lengths[rows].sum())

    def _record(self, f1: float) -> None:
        self.outcome.history.append({"epoch": self.epoch, "val_macro_f1": round(f1, 6), "steps": self.outcome.steps})
        if f1 > self.outcome.best_f1:
            self.outcome.best_f1, self.outcome.best_epoch, self.stale = f1, self.epoch, 0
            self.best_state = _snapshot(self.model)
        else:
            self.stale += 1

    def _replan(self, deadline: float, epoch_seconds: float) -> None:
        """Fit the cosine to the epochs the budget still allows, so the rate decays before time runs out."""
        epochs_left = int((deadline - time.monotonic()) // max(epoch_seconds, 1e-6))
        planned = min(self.params.max_epochs, self.epoch + max(epochs_left, 1))
        self.schedule.replan(self.steps_per_epoch * planned)

    # -------------------------------------------------------------------------------------- checkpoints

    def _checkpoint_path(self) -> Path | None:
        return None if self.ctx.checkpoint_dir is None else Path(self.ctx.checkpoint_dir) / CHECKPOINT_FILE

    def _run_key(self) -> str:
        """Identity of the run: resuming is only right with the same parameters, data and seed."""
        digest = hashlib.sha256(json.dumps(self.params.model_dump(), sort_keys=True).encode())
        digest.update(np.asarray(self.data.y).tobytes())
        digest.update(np.asarray(self.data.lengths).tobytes())
        digest.update(f"{self.ctx.seed}:{len(self.val.y)}".encode())
        return digest.hexdigest()

    def _save_checkpoint(self) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "key": self._run_key(),
            "epoch": self.epoch,
            "stale": self.stale,
            "model": _snapshot(self.model),
            "best_state": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "schedule": [self.schedule.step_count, self.schedule.total_steps],
            "outcome": json.dumps(asdict(self.outcome)),
            "rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
        }
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(path)

    def _resume(self) -> None:
        path = self._checkpoint_path()
        if path is None or not path.is_file():
            return
        state = torch.load(path, weights_only=True)
        if state.get("key") != self._run_key():
            return
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.step_count, self.schedule.total_steps = state["schedule"]
        self.epoch, self.stale, self.best_state = state["epoch"], state["stale"], state["best_state"]
        self.outcome = _Outcome(**json.loads(state["outcome"]))
        self.rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainable_parameters(model).items()}


@torch.no_grad()
def _pooled_features(model: TrainableEncoder, data: _Data, bf16: bool, pad_id: int) -> np.ndarray:
    was_training = model.training
    model.eval()
    order = np.argsort(-data.lengths, kind="stable")
    pooled = np.zeros((len(order), model.head.in_features), dtype=np.float32)
    for start in range(0, len(order), VAL_BATCH):
        rows = order[start : start + VAL_BATCH]
        input_ids, mask = collate(data.ids, rows, pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pooled[rows] = model.pooled(input_ids, mask).float().numpy()
    model.train(was_training)
    return pooled


def _evaluate(model: TrainableEncoder, data: _Data, bf16: bool, pad_id: int) -> float:
    pooled = _pooled_features(model, data, bf16, pad_id)
    with torch.no_grad():
        logits = model.head(torch.from_numpy(pooled)).numpy()
    return _macro_f1(data.y, logits)


def _probe_head(
    model: TrainableEncoder, data: _Data, val: _Data, params: EncoderFtParams, seed: int, bf16: bool, pad_id: int
) -> None:
    """Set the head to a linear probe trained on the frozen encoder's pooled features (the LoRA update is zero
    at the start), so fine-tuning starts from route 1's linear head instead of spending its first epoch on a
    random one. The probe's standardisation is folded into the head's weights."""
    from modeling.engine.routes.heads import train_head

    features, val_features = (_pooled_features(model, d, bf16, pad_id) for d in (data, val))
    n_classes = model.head.out_features
    config = HeadConfig(kind="linear", loss=params.loss, focal_gamma=params.focal_gamma)
    probe = train_head(HeadInputs(features), data.y, HeadInputs(val_features), val.y, n_classes, config, seed=seed)
    part = probe.parts[0]
    ((weight, bias),) = part.layers
    folded = weight / part.std[None, :]
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(folded))
        model.head.bias.copy_(torch.from_numpy(bias - folded @ part.mean))


def _changed_weights(model: TrainableEncoder, mode: str) -> dict[str, torch.Tensor]:
    """What differs from the base pack: the LoRA matrices, or every trained encoder weight (fp32)."""
    if mode == "lora":
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model.encoder)
    else:
        state = {n: p for n, p in model.encoder.named_parameters() if p.requires_grad}
    return {name: t.detach().float().clone().contiguous() for name, t in state.items()}


def _head_arrays(model: TrainableEncoder) -> tuple[np.ndarray, np.ndarray]:
    return (
        model.head.weight.detach().float().numpy().copy(),
        model.head.bias.detach().float().numpy().copy(),
    )


def _count(tensors: dict[str, torch.Tensor]) -> int:
    return int(sum(t.numel() for t in tensors.values()))


def _meta(
    params: EncoderFtParams,
    spec: BackboneSpec,
    keys: list[str],
    max_len: int,
    outcome: _Outcome,
    alpha: float | None,
    model_trainable: int,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "route": "encoder_ft",
        "params": params.model_dump(),
        "label_keys": keys,
        "backbone": spec.name,
        "fingerprint": spec.fingerprint,
        "mode": params.mode,
        "max_len": max_len,
        "alpha": alpha,
        "trainable_parameters": model_trainable,
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "stopped_by": outcome.stopped_by,
        "steps": outcome.steps,
        "train_tokens": outcome.train_tokens,
        "train_seconds": outcome.train_seconds,
    }


# ---------------------------------------------------------------------------------------------- serving


def merged_encoder(spec: BackboneSpec, mode: str, trainable_spec: TrainableSpec, changed: dict[str, torch.Tensor]):
    """The base pack with the changed weights applied (LoRA merged into the dense weights), in fp32."""
    base = load_base(spec.path, torch.float32)
    if mode == "lora":
        from peft import get_peft_model, set_peft_model_state_dict

        peft_model = get_peft_model(base, lora_config(trainable_spec))
        result = set_peft_model_state_dict(peft_model, changed)
        if result.unexpected_keys:
            raise BackboneError(f"adapter weights do not fit {spec.name}: {result.unexpected_keys[:3]}")
        return peft_model.merge_and_unload()
    missing = set(changed) - {n for n, _ in base.named_parameters()}
    if missing:
        raise BackboneError(f"fine-tuned weights do not fit {spec.name}: {sorted(missing)[:3]}")
    base.load_state_dict(changed, strict=False)
    return base


def _serving_extractor(
    spec: BackboneSpec,
    mode: str,
    trainable_spec: TrainableSpec,
    changed: dict[str, torch.Tensor],
    max_len: int,
    precision: str,
) -> FeatureExtractor:
    model = merged_encoder(spec, mode, trainable_spec, changed)
    config = FeatureConfig(pooling="mean", layer="last", max_len=max_len, dtype=precision, normalize=False)
    return FeatureExtractor(spec, config, model_and_tokenizer=(model, _tokenizer(spec)))


def _load(folder: Path, ctx: LoadContext) -> FittedEncoder:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{folder} holds no encoder_ft model ({exc})") from None
    if meta.get("format") != FORMAT:
        raise BackboneError(f"{folder}: encoder_ft format {meta.get('format')} is not {FORMAT}")
    params = EncoderFtParams.model_validate(meta["params"])
    spec = resolve_backbone(params.backbone, ctx.model_root)
    if spec.fingerprint != meta["fingerprint"]:
        raise BackboneError(
            f"the installed {spec.name} (fingerprint {spec.fingerprint[:12]}) is not the base this model was "
            f"fine-tuned from ({meta['fingerprint'][:12]}); reinstall that pack or retrain"
        )
    trainable_spec = TrainableSpec(params.mode, params.lora_r, params.lora_alpha, params.lora_dropout)
    changed = load_file(str(folder / WEIGHTS_FILE))
    extractor = _serving_extractor(spec, params.mode, trainable_spec, changed, meta["max_len"], params.precision)
    head = load_file(str(folder / HEAD_FILE))
    head_arrays = (head["weight"].numpy(), head["bias"].numpy())
    tfidf = load_head(folder / TFIDF_DIR) if (folder / TFIDF_DIR).is_dir() else None
    return FittedEncoder(meta["label_keys"], spec, extractor, head_arrays, tfidf, meta["alpha"], meta, changed)


route = register(EncoderFtRoute())
