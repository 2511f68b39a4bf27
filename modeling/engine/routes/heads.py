"""Classification heads on frozen features and/or raw texts.

Kinds:
- ``linear``: multinomial logistic regression in torch on standardised features (AdamW, early stopping).
- ``mlp``: one hidden ReLU layer + dropout 0.1, AdamW lr 1e-3, weight decay 0.01, early stopping.
- ``sklearn_lr``: scikit-learn ``LogisticRegression`` on standardised features.
- ``tfidf``: character 1-3 grams + word n-grams (``TextVectorizer``) + ``LogisticRegression``.
- ``hybrid``: frozen features and TF-IDF together, either a logit ensemble whose weight is tuned on the
  validation split (``hybrid_mode="ensemble"``) or one logistic regression on the concatenation
  (``hybrid_mode="concat"``).

Trained heads are pure numpy at inference time (one matmul or two for the MLP) and are saved as
safetensors/npy/json: no pickled objects.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.numpy import load_file, save_file
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from modeling.engine.routes.base import Cancelled
from modeling.engine.routes.text_features import TextVectorizer, TfidfConfig

__all__ = ["Cancelled", "HeadConfig", "HeadInputs", "TrainedHead", "class_weights", "load_head", "train_head"]

ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]

FEATURE_KINDS = ("linear", "mlp", "sklearn_lr")
HEAD_KINDS = (*FEATURE_KINDS, "tfidf", "hybrid")
LOSSES = ("weighted", "focal", "none")
HYBRID_MODES = ("ensemble", "concat")
HEAD_FILE = "head.json"
# Logit given to classes a scikit-learn model never saw in training: finite, but never chosen.
ABSENT_CLASS_LOGIT = -1e4
ENSEMBLE_GRID = tuple(round(a * 0.05, 2) for a in range(21))


@dataclass
class HeadInputs:
    """What a head sees for n texts: frozen features (n, d) and/or the raw texts, and optional per-row
    training weights (doubtful labels down-weighted)."""

    features: np.ndarray | None = None
    texts: list[str] = field(default_factory=list)
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.features is not None:
            self.features = np.asarray(self.features, dtype=np.float32)
            if self.features.ndim != 2:
                raise ValueError(f"features must be a 2-D matrix, got shape {self.features.shape}")
        if self.features is not None and self.texts and len(self.texts) != self.features.shape[0]:
            raise ValueError(f"{len(self.texts)} texts but {self.features.shape[0]} feature rows")
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float32)
            if self.weights.shape != (len(self),):
                raise ValueError(f"{len(self)} rows but weights of shape {self.weights.shape}")

    def __len__(self) -> int:
        return self.features.shape[0] if self.features is not None else len(self.texts)

    def subset(self, index: np.ndarray) -> HeadInputs:
        feats = self.features[index] if self.features is not None else None
        texts = [self.texts[i] for i in index] if self.texts else []
        weights = self.weights[index] if self.weights is not None else None
        return HeadInputs(feats, texts, weights)


@dataclass
class HeadConfig:
    kind: str = "linear"
    feature_kind: str = "linear"  # the feature part of a hybrid head
    hybrid_mode: str = "ensemble"
    loss: str = "weighted"  # class weights 1/log(1.02 + share), focal (gamma) or plain cross-entropy
    focal_gamma: float = 2.0
    hidden_dim: int = 512
    dropout: float = 0.1
    lr: float = 1e-3
    linear_lr: float = 1e-3  # 1e-2 peaked at epoch 1 and lost 0.14 macro-F1 on CIC (noisy labels, 118 classes)
    weight_decay: float = 0.01
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 3
    sklearn_c: float = 1.0
    tfidf_c: float = 10.0
    max_iter: int = 1000
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)

    def __post_init__(self) -> None:
        if isinstance(self.tfidf, dict):
            self.tfidf = TfidfConfig(**self.tfidf)
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {self.kind!r}; choose one of {', '.join(HEAD_KINDS)}")
        if self.feature_kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature head {self.feature_kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
        if self.hybrid_mode not in HYBRID_MODES:
            raise ValueError(f"unknown hybrid mode {self.hybrid_mode!r}; choose one of {', '.join(HYBRID_MODES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")

    @property
    def needs_features(self) -> bool:
        return self.kind != "tfidf"

    @property
    def needs_texts(self) -> bool:
        return self.kind in ("tfidf", "hybrid")

    def to_dict(self) -> dict:
        return asdict(self)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """1 / log(1.02 + class share): rare classes weigh more, but far less than with 1/share."""
    share = np.bincount(y, minlength=n_classes) / max(len(y), 1)
    return (1.0 / np.log(1.02 + share)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- parts


class _DensePart:
    """Standardise features, then a linear layer or a one-hidden-layer MLP, evaluated in numpy."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.mean, self.std, self.layers = mean, std, layers

    @property
    def in_dim(self) -> int:
        return int(self.mean.shape[0])

    def logits(self, inputs: HeadInputs) -> np.ndarray:
        h = (_require_features(inputs, self.in_dim) - self.mean) / self.std
        for i, (weight, bias) in enumerate(self.layers):
            h = h @ weight.T + bias
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h.astype(np.float32)

    def save(self, directory: Path, name: str) -> dict:
        tensors = {"mean": self.mean, "std": self.std}
        for i, (weight, bias) in enumerate(self.layers):
            tensors[f"w{i}"], tensors[f"b{i}"] = np.ascontiguousarray(weight), np.ascontiguousarray(bias)
        save_file(tensors, str(directory / f"{name}.safetensors"))
        return {"type": "dense", "name": name, "n_layers": len(self.layers)}

    @classmethod
    def load(cls, directory: Path, meta: dict) -> _DensePart:
        t = load_file(str(directory / f"{meta['name']}.safetensors"))
        layers = [(t[f"w{i}"], t[f"b{i}"]) for i in range(meta["n_layers"])]
        return cls(t["mean"], t["std"], layers)


class _LinearPart:
    """A scikit-learn style linear model over features, TF-IDF or both (concatenated)."""

    def __init__(
        self,
        coef: np.ndarray,
        intercept: np.ndarray,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        dense_scale: float = 1.0,
        vectorizer: TextVectorizer | None = None,
    ) -> None:
        self.coef, self.intercept = coef, intercept.astype(np.float32)
        self.mean, self.std, self.dense_scale, self.vectorizer = mean, std, dense_scale, vectorizer

    def design(self, inputs: HeadInputs) -> np.ndarray | sp.csr_matrix:
        blocks = []
        if self.mean is not None:
            dense = (_require_features(inputs, int(self.mean.shape[0])) - self.mean) / self.std
            blocks.append(dense * self.dense_scale)
        if self.vectorizer is not None:
            if len(inputs.texts) != len(inputs):
                raise ValueError("this head reads the raw texts: HeadInputs.texts must be given")
            blocks.append(self.vectorizer.transform(inputs.texts))
        if len(blocks) == 1:
            return blocks[0]
        return sp.hstack([sp.csr_matrix(blocks[0]), blocks[1]], format="csr")

    @property
    def coef(self) -> np.ndarray:
        return self._coef

    @coef.setter
    def coef(self, value: np.ndarray) -> None:
        self._coef = np.asarray(value, dtype=np.float32)
        # (n_inputs, C) layout, contiguous: a product with coef.T would copy the whole matrix on every call.
        self._coef_t = np.ascontiguousarray(self._coef.T)

    def logits(self, inputs: HeadInputs) -> np.ndarray:
        out = np.tile(self.intercept, (len(inputs), 1))
        offset = 0
        if self.mean is not None:
            dense = (_require_features(inputs, int(self.mean.shape[0])) - self.mean) / self.std
            offset = dense.shape[1]
            out += (dense * self.dense_scale) @ self._coef_t[:offset]
        if self.vectorizer is not None:
            if len(inputs.texts) != len(inputs):
                raise ValueError("this head reads the raw texts: HeadInputs.texts must be given")
            out += np.asarray(self.vectorizer.transform(inputs.texts) @ self._coef_t[offset:], dtype=np.float32)
        return out

    def save(self, directory: Path, name: str) -> dict:
        arrays = {"coef": self.coef, "intercept": self.intercept}
        if self.mean is not None:
            arrays.update(mean=self.mean, std=self.std)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / f"{name}.safetensors"))
        if self.vectorizer is not None:
            self.vectorizer.save(directory / f"{name}_tfidf")
        return {
            "type": "linear",
            "name": name,
            "dense_scale": self.dense_scale,
            "has_features": self.mean is not None,
            "has_texts": self.vectorizer is not None,
        }

    @classmethod
    def load(cls, directory: Path, meta: dict) -> _LinearPart:
        t = load_file(str(directory / f"{meta['name']}.safetensors"))
        vectorizer = TextVectorizer.load(directory / f"{meta['name']}_tfidf") if meta["has_texts"] else None
        return cls(t["coef"], t["intercept"], t.get("mean"), t.get("std"), meta["dense_scale"], vectorizer)


def _require_features(inputs: HeadInputs, dim: int | None = None) -> np.ndarray:
    if inputs.features is None:
        raise ValueError("this head needs frozen features: HeadInputs.features is missing")
    if dim is not None and inputs.features.shape[1] != dim:
        raise ValueError(f"feature dimension {inputs.features.shape[1]} does not match the head's {dim}")
    return inputs.features


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0).astype(np.float32)
    std = np.maximum(x.std(axis=0), 1e-6).astype(np.float32)
    return mean, std


# ---------------------------------------------------------------------------------------------- head


class TrainedHead:
    """A trained head: one part, or two parts mixed as ``alpha * log p_text + (1 - alpha) * log p_feat``."""

    def __init__(self, config: HeadConfig, n_classes: int, parts: list, alpha: float | None = None) -> None:
        self.config, self.n_classes, self.parts, self.alpha = config, n_classes, parts, alpha
        self.history: list[dict] = []
        self.best_epoch: int | None = None

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def feature_dim(self) -> int | None:
        for part in self.parts:
            if isinstance(part, _DensePart):
                return part.in_dim
            if isinstance(part, _LinearPart) and part.mean is not None:
                return int(part.mean.shape[0])
        return None

    def logits(self, inputs: HeadInputs) -> np.ndarray:
        if self.alpha is None:
            return self.parts[0].logits(inputs)
        feat, text = (log_softmax(p.logits(inputs).astype(np.float64), axis=1) for p in self.parts)
        return ((1.0 - self.alpha) * feat + self.alpha * text).astype(np.float32)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        parts = [part.save(directory, f"part{i}") for i, part in enumerate(self.parts)]
        meta = {
            "format": 1,
            "config": self.config.to_dict(),
            "n_classes": self.n_classes,
            "alpha": self.alpha,
            "parts": parts,
            "feature_dim": self.feature_dim,
            "history": self.history,
            "best_epoch": self.best_epoch,
        }
        (directory / HEAD_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_head(directory: Path) -> TrainedHead:
    directory = Path(directory)
    meta = json.loads((directory / HEAD_FILE).read_text(encoding="utf-8"))
    loaders = {"dense": _DensePart.load, "linear": _LinearPart.load}
    parts = [loaders[p["type"]](directory, p) for p in meta["parts"]]
    head = TrainedHead(HeadConfig(**meta["config"]), meta["n_classes"], parts, meta["alpha"])
    head.history, head.best_epoch = meta.get("history", []), meta.get("best_epoch")
    return head


# ---------------------------------------------------------------------------------------------- training


def train_head(
    inputs_train: HeadInputs,
    y_train: np.ndarray,
    inputs_val: HeadInputs,
    y_val: np.ndarray,
    n_classes: int,
    config: HeadConfig,
    seed: int = 0,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    deadline: float | None = None,
) -> TrainedHead:
    """Train a head; ``should_stop()`` is polled between epochs/stages and raises ``Cancelled``. At
    ``deadline`` (a ``time.monotonic()`` value) a torch head stops after its current epoch and keeps its best
    weights so far."""
    y_train, y_val = _check_labels(y_train, n_classes, "y_train"), _check_labels(y_val, n_classes, "y_val")
    if len(inputs_train) != len(y_train) or len(inputs_val) != len(y_val):
        raise ValueError("inputs and labels differ in length")
    if len(np.unique(y_train)) < 2:
        raise ValueError("training needs examples of at least two classes")
    ctx = _Context(progress, should_stop, deadline=deadline)
    if config.kind in FEATURE_KINDS:
        return _train_feature_head(config.kind, inputs_train, y_train, inputs_val, y_val, n_classes, config, seed, ctx)
    if config.kind == "tfidf":
        part = _fit_sklearn(inputs_train, y_train, n_classes, config, seed, features=False, texts=True)
        ctx.report(1.0, "tfidf head trained")
        return TrainedHead(config, n_classes, [part])
    if config.hybrid_mode == "concat":
        part = _fit_sklearn(inputs_train, y_train, n_classes, config, seed, features=True, texts=True)
        ctx.report(1.0, "hybrid head trained")
        return TrainedHead(config, n_classes, [part])
    return _train_ensemble(inputs_train, y_train, inputs_val, y_val, n_classes, config, seed, ctx)


class _Context:
    def __init__(
        self, progress: ProgressFn | None, should_stop: StopFn | None, start=0.0, span=1.0, deadline=None
    ) -> None:
        self.progress, self.should_stop, self.start, self.span = progress, should_stop, start, span
        self.deadline = deadline

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def report(self, fraction: float, message: str) -> None:
        self.check()
        if self.progress is not None:
            self.progress(self.start + self.span * min(max(fraction, 0.0), 1.0), message)

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("training cancelled")

    def sub(self, start: float, span: float) -> _Context:
        return _Context(
            self.progress, self.should_stop, self.start + self.span * start, self.span * span, self.deadline
        )


def _check_labels(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.int64)
    if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
        raise ValueError(f"{name} must be class indices in [0, {n_classes})")
    return y


def _macro_f1(y_true: np.ndarray, logits: np.ndarray) -> float:
    return float(f1_score(y_true, logits.argmax(axis=1), average="macro", zero_division=0))


def _train_feature_head(
    kind: str, xtr: HeadInputs, ytr, xva: HeadInputs, yva, n_classes: int, config: HeadConfig, seed: int, ctx
) -> TrainedHead:
    if kind == "sklearn_lr":
        part = _fit_sklearn(xtr, ytr, n_classes, config, seed, features=True, texts=False)
        ctx.report(1.0, "logistic regression trained")
        return TrainedHead(config, n_classes, [part])
    part, history, best_epoch = _fit_torch(kind, xtr, ytr, xva, yva, n_classes, config, seed, ctx)
    head = TrainedHead(config, n_classes, [part])
    head.history, head.best_epoch = history, best_epoch
    return head


def _train_ensemble(xtr, ytr, xva, yva, n_classes: int, config: HeadConfig, seed: int, ctx: _Context) -> TrainedHead:
    feat_head = _train_feature_head(config.feature_kind, xtr, ytr, xva, yva, n_classes, config, seed, ctx.sub(0, 0.7))
    text_part = _fit_sklearn(xtr, ytr, n_classes, config, seed, features=False, texts=True)
    ctx.report(0.9, "tfidf part trained")
    feat_lp = log_softmax(feat_head.parts[0].logits(xva).astype(np.float64), axis=1)
    text_lp = log_softmax(text_part.logits(xva).astype(np.float64), axis=1)
    alpha = _best_alpha(feat_lp, text_lp, yva)
    head = TrainedHead(config, n_classes, [feat_head.parts[0], text_part], alpha)
    head.history, head.best_epoch = feat_head.history, feat_head.best_epoch
    ctx.report(1.0, f"hybrid ensemble weight {alpha:.2f}")
    return head


def _best_alpha(feat_lp: np.ndarray, text_lp: np.ndarray, y: np.ndarray) -> float:
    """Mixing weight with the best validation macro-F1; ties go to the lower validation NLL."""
    best, best_key = 0.0, None
    for alpha in ENSEMBLE_GRID:
        mixed = (1 - alpha) * feat_lp + alpha * text_lp
        nll = -float(log_softmax(mixed, axis=1)[np.arange(len(y)), y].mean())
        key = (round(_macro_f1(y, mixed), 6), -nll)
        if best_key is None or key > best_key:
            best, best_key = alpha, key
    return best


def _fit_sklearn(
    inputs: HeadInputs, y: np.ndarray, n_classes: int, config: HeadConfig, seed: int, *, features: bool, texts: bool
) -> _LinearPart:
    mean = std = vectorizer = None
    dense_scale = 1.0
    if features:
        mean, std = _standardiser(_require_features(inputs))
    if texts:
        if len(inputs.texts) != len(inputs):
            raise ValueError("this head reads the raw texts: HeadInputs.texts must be given")
        vectorizer = TextVectorizer(config.tfidf).fit(inputs.texts)
    if features and texts:
        # A standardised d-dim row has norm ~sqrt(d); scale it to ~1 like each L2-normalised TF-IDF block.
        dense_scale = 1.0 / math.sqrt(mean.shape[0])
    part = _LinearPart(np.zeros((1, 1)), np.zeros(1), mean, std, dense_scale, vectorizer)
    x = part.design(inputs)
    weights = class_weights(y, n_classes)
    present = np.unique(y)
    model = LogisticRegression(
        C=config.tfidf_c if texts else config.sklearn_c,
        max_iter=config.max_iter,
        class_weight=None if config.loss == "none" else {int(c): float(weights[c]) for c in present},
        random_state=seed,
    )
    model.fit(x, y, sample_weight=inputs.weights)
    coef = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    intercept = np.full(n_classes, ABSENT_CLASS_LOGIT, dtype=np.float32)
    if len(model.classes_) == 2:  # sklearn keeps one row for two classes: logit of class 1 against class 0
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], model.intercept_[0]
        intercept[model.classes_[0]] = 0.0
    else:
        coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
    part.coef, part.intercept = coef, intercept
    return part


class _Mlp(torch.nn.Module):
    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(in_dim, hidden)
        self.dropout = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(torch.relu(self.hidden(x))))


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _loss_fn(config: HeadConfig, weights: np.ndarray) -> LossFn:
    """Loss of a batch; the third argument holds per-row weights (or None): a row's loss counts that much."""
    class_weight = torch.from_numpy(weights) if config.loss == "weighted" else None

    def per_row(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if config.loss == "focal":
            logp = torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
            return -((1 - logp.exp()) ** config.focal_gamma) * logp
        return torch.nn.functional.cross_entropy(logits, target, weight=class_weight, reduction="none")

    def loss(logits: torch.Tensor, target: torch.Tensor, row_weights: torch.Tensor | None) -> torch.Tensor:
        rows = per_row(logits, target)
        # CrossEntropyLoss(weight=...) averages over the summed class weights; keep that scale.
        scale = class_weight[target] if class_weight is not None and config.loss != "focal" else torch.ones_like(rows)
        if row_weights is not None:
            rows, scale = rows * row_weights, scale * row_weights
        return rows.sum() / scale.sum().clamp_min(1e-12)

    return loss


def _fit_torch(kind: str, xtr: HeadInputs, ytr, xva: HeadInputs, yva, n_classes: int, config: HeadConfig, seed, ctx):
    x_raw = _require_features(xtr)
    mean, std = _standardiser(x_raw)
    x = torch.from_numpy((x_raw - mean) / std)
    xv = torch.from_numpy((_require_features(xva, x.shape[1]) - mean) / std)
    y, yv = torch.from_numpy(ytr), torch.from_numpy(yva)
    row_weights = None if xtr.weights is None else torch.from_numpy(xtr.weights)
    loss_fn = _loss_fn(config, class_weights(ytr, n_classes))
    # fork_rng keeps the caller's global torch RNG untouched while making init, shuffling and dropout seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "mlp":
            model: torch.nn.Module = _Mlp(x.shape[1], config.hidden_dim, n_classes, config.dropout)
            lr = config.lr
        else:
            model = torch.nn.Linear(x.shape[1], n_classes)
            lr = config.linear_lr
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        history, best_key, best_state, best_epoch, best_f1, bad_epochs = [], None, None, 0, -1.0, 0
        for epoch in range(1, config.max_epochs + 1):
            ctx.check()
            model.train()
            for batch in torch.randperm(len(y), generator=generator).split(config.batch_size):
                optimizer.zero_grad()
                batch_weights = None if row_weights is None else row_weights[batch]
                loss_fn(model(x[batch]), y[batch], batch_weights).backward()
                optimizer.step()
            model.eval()
            with torch.inference_mode():
                val_logits = model(xv)
                val_nll = float(torch.nn.functional.cross_entropy(val_logits, yv))
            f1 = _macro_f1(yva, val_logits.numpy())
            history.append({"epoch": epoch, "val_macro_f1": round(f1, 6), "val_nll": round(val_nll, 6)})
            # Keep the weights with the best (macro-F1, -NLL); patience counts epochs without a macro-F1 gain,
            # so a plateau in F1 stops training even while the NLL still creeps down.
            key = (round(f1, 6), -val_nll)
            if best_key is None or key > best_key:
                best_key, best_epoch = key, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if round(f1, 6) > best_f1:
                best_f1, bad_epochs = round(f1, 6), 0
            else:
                bad_epochs += 1
            ctx.report(epoch / config.max_epochs, f"epoch {epoch}: val macro-F1 {f1:.3f}")
            if bad_epochs >= config.patience or ctx.out_of_time():
                break
    model.load_state_dict(best_state)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    layers = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]
    return _DensePart(mean, std, layers), history, best_epoch
