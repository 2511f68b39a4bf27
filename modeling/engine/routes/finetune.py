"""The trainable side of a fine-tuned BERT-family encoder: model, batches, optimizer, schedule, loss.

``encoder_ft`` trains with these, and ``benchmarks/finetune.py`` times the same step against a naive loop.
Serving does not run this forward: the changed weights are merged into the base and run through the lean
inference forward of extraction (backbones/fast_encoder.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LORA_TARGETS = ("query", "key", "value", "dense")


@dataclass(frozen=True)
class TrainableSpec:
    mode: str = "lora"  # "lora" | "full"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    train_embeddings: bool = False  # the word-embedding table; position/type embeddings follow `mode`
    # transformers' own dropout (hidden states, attention probabilities): its random masks took ~45 % of a LoRA
    # step on this CPU (e5-small, 64 x 12 tokens, 1 thread: 1.69 s -> 0.93 s a step without any dropout).
    encoder_dropout: float = 0.0
    bf16: bool = True  # autocast to bf16 (and, for LoRA, hold the frozen base in bf16)


def lora_config(spec: TrainableSpec):
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=list(LORA_TARGETS),
        bias="none",
    )


def load_base(path: str, dtype: torch.dtype = torch.float32, dropout: float | None = None):
    """The pack's encoder without its pooler, with plain matmul attention (as extraction loads it);
    `dropout` replaces the config's hidden and attention dropout."""
    from transformers import AutoModel

    kwargs = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    return AutoModel.from_pretrained(path, dtype=dtype, add_pooling_layer=False, attn_implementation="eager", **kwargs)


def dropout_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype) -> torch.Tensor:
    """F.dropout's mask (keep with probability 1 - p, scaled by 1 / (1 - p)), drawn as 15-bit integers from
    torch's generator: on this CPU ``bernoulli_`` costs ~17 ns a number, and LoRA's input dropout draws one for
    every input of 72 adapters per step (~30 % of a step); two 15-bit draws from one int32 cost ~1 ns.
    p is rounded to a multiple of 1/32768, and the scale follows the rounded p, so the mean is kept exactly."""
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16)[:n]
    drop = round(p * 32768)
    keep = (bits & 0x7FFF) >= drop
    return keep.view(shape).to(dtype).mul_(32768 / (32768 - drop))


class _TrainLinear:
    """One linear layer as the training forward runs it: the model's own weight and bias (no copies of trained
    tensors), and its LoRA pair when peft wraps it."""

    def __init__(self, module: torch.nn.Module) -> None:
        base = getattr(module, "base_layer", module)
        self.weight, self.bias = base.weight, base.bias
        self.lora_a = self.lora_b = None
        self.scaling, self.lora_p = 1.0, 0.0
        if hasattr(module, "lora_A"):
            (name,) = module.active_adapters
            if getattr(module, "use_dora", {}).get(name):
                raise ValueError("the training forward runs plain LoRA, not DoRA")
            self.lora_a, self.lora_b = module.lora_A[name].weight, module.lora_B[name].weight
            self.scaling = float(module.scaling[name])
            dropout = module.lora_dropout[name]
            self.lora_p = float(dropout.p) if isinstance(dropout, torch.nn.Dropout) else 0.0

    def lora_delta(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """scaling * B A dropout(x), in x's dtype (the fp32 adapter weights are cast once per call)."""
        if training and self.lora_p > 0.0:
            x = x * dropout_mask(tuple(x.shape), self.lora_p, x.dtype)
        down = F.linear(x, self.lora_a.to(x.dtype))
        return F.linear(down, self.lora_b.to(x.dtype) * self.scaling)


class _FusedLinear:
    """Linear layers that read the same input (Q, K, V) as one matmul on their concatenated weights. A frozen
    base weight is concatenated and cast once; a trained one every call (autograd splits its gradient)."""

    def __init__(self, modules: Sequence[torch.nn.Module], dtype: torch.dtype) -> None:
        self.parts = [_TrainLinear(m) for m in modules]
        self.dtype = dtype
        self.trained = any(p.weight.requires_grad for p in self.parts)
        self.frozen = None if self.trained else tuple(t if t is None else t.detach() for t in self._concatenated())
        if len({p.lora_a is None for p in self.parts}) != 1:
            raise ValueError("fused layers must all have a LoRA adapter or none")
        self.lora = self.parts[0].lora_a is not None

    def _concatenated(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight = torch.cat([p.weight for p in self.parts]).to(self.dtype)
        biases = [p.bias for p in self.parts]
        bias = None if any(b is None for b in biases) else torch.cat(biases).to(self.dtype)
        return weight, bias

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        weight, bias = self._concatenated() if self.trained else self.frozen
        out = F.linear(x, weight, bias)
        if self.lora:
            out = out + torch.cat([p.lora_delta(x, training) for p in self.parts], dim=-1)
        return out


class _Layer:
    def __init__(self, layer: torch.nn.Module, dtype: torch.dtype) -> None:
        attn = layer.attention.self
        self.qkv = _FusedLinear([attn.query, attn.key, attn.value], dtype)
        self.attn_out = _FusedLinear([layer.attention.output.dense], dtype)
        self.attn_norm = layer.attention.output.LayerNorm
        self.ffn_in = _FusedLinear([layer.intermediate.dense], dtype)
        self.ffn_out = _FusedLinear([layer.output.dense], dtype)
        self.out_norm = layer.output.LayerNorm


def _layer_norm(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)


class TrainForward:
    """The training forward of a BERT-family encoder (plain or LoRA-wrapped by peft) over the model's own
    parameters, with fewer, bigger steps than transformers' module-by-module one under autocast (profiled on
    e5-small, 1 thread, batches of 32 x ~14 tokens): Q, K and V in one matmul; matmuls and GELU in the compute
    dtype, each layer input cast once and shared by the base matmul and its adapters, where autocast re-cast it
    per op and peft cast it to fp32 for every adapter; LoRA input dropout from ``dropout_mask``. Softmax, the
    residual stream and LayerNorms stay fp32, as under autocast (torch's fused attention was 30x slower in
    backward at ~14 keys). Same function as transformers' forward (tests/engine/test_route_encoder_ft.py)."""

    def __init__(self, encoder: torch.nn.Module, dtype: torch.dtype) -> None:
        model = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder
        config = model.config
        if config.hidden_act != "gelu" or getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"the training forward runs BERT-style encoders, not {config.model_type}")
        self.embeddings, self.dtype = model.embeddings, dtype
        self.n_heads = int(config.num_attention_heads)
        self.hidden = int(config.hidden_size)
        self.hidden_dropout = float(config.hidden_dropout_prob)
        self.attention_dropout = float(config.attention_probs_dropout_prob)
        self.layers = [_Layer(layer, dtype) for layer in model.encoder.layer]

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor, training: bool) -> torch.Tensor:
        """Last hidden states, fp32, (rows, width, hidden)."""
        rows, width = input_ids.shape
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            x = self.embeddings(input_ids=input_ids).float()  # its LayerNorm in fp32, as under autocast
        # Padding keys get -inf-like scores; a batch without padding skips the add.
        keys = None if bool(mask.all()) else (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        with torch.autocast("cpu", enabled=False):
            x = x.reshape(rows * width, self.hidden)
            for layer in self.layers:
                x = self._layer(layer, x, rows, width, keys, training)
        return x.view(rows, width, self.hidden)

    def _layer(self, layer: _Layer, x: torch.Tensor, rows: int, width: int, keys, training: bool) -> torch.Tensor:
        head_dim = self.hidden // self.n_heads
        qkv = layer.qkv(x.to(self.dtype), training).view(rows, width, 3, self.n_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scores = (q @ k.transpose(-1, -2)).float() * head_dim**-0.5
        probs = torch.softmax(scores if keys is None else scores + keys, dim=-1)
        probs = F.dropout(probs, self.attention_dropout, training).to(self.dtype)
        context = (probs @ v).transpose(1, 2).reshape(rows * width, self.hidden)
        attended = F.dropout(layer.attn_out(context, training).float(), self.hidden_dropout, training)
        x = _layer_norm(layer.attn_norm, attended + x)
        inner = F.gelu(layer.ffn_in(x.to(self.dtype), training))
        out = F.dropout(layer.ffn_out(inner, training).float(), self.hidden_dropout, training)
        return _layer_norm(layer.out_norm, out + x)


class TrainableEncoder(torch.nn.Module):
    """Encoder (LoRA-wrapped or fully trainable) + masked mean pooling + a linear head; runs ``TrainForward``."""

    def __init__(self, encoder: torch.nn.Module, n_classes: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.head = torch.nn.Linear(hidden, n_classes)
        self.forward_pass = TrainForward(encoder, dtype)

    def pooled(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.forward_pass(input_ids, mask, self.training)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(input_ids, mask))


def build_trainable(path: str, spec: TrainableSpec, n_classes: int) -> TrainableEncoder:
    """A model whose only trainable parameters are the adapter (LoRA) or the non-embedding weights (full), plus
    the head. For LoRA the frozen base is held in bf16 under bf16 autocast: autocast would otherwise re-cast
    every frozen fp32 weight on every forward."""
    if spec.mode not in ("lora", "full"):
        raise ValueError(f"mode must be 'lora' or 'full', not {spec.mode!r}")
    base_dtype = torch.bfloat16 if spec.mode == "lora" and spec.bf16 else torch.float32
    base = load_base(path, base_dtype, spec.encoder_dropout)
    if spec.mode == "lora":
        from peft import get_peft_model

        encoder = get_peft_model(base, lora_config(spec))
        for param in encoder.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    else:
        encoder = base
    word_embeddings = encoder.get_input_embeddings().weight
    word_embeddings.requires_grad_(spec.train_embeddings)
    return TrainableEncoder(encoder, n_classes, torch.bfloat16 if spec.bf16 else torch.float32)


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def make_optimizer(model: TrainableEncoder, lr: float, head_lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only, the head at its own (higher) rate, one fused kernel per group.

    Biases and LayerNorm weights get no weight decay."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in trainable_parameters(model).items():
        rate = head_lr if name.startswith("head.") else lr
        decay = 0.0 if param.ndim < 2 else weight_decay
        groups.setdefault((rate, decay), []).append(param)
    param_groups = [{"params": ps, "lr": rate, "weight_decay": decay} for (rate, decay), ps in groups.items()]
    return torch.optim.AdamW(param_groups, fused=True)


class WarmupCosine:
    """Linear warmup over `warmup` of the steps, then cosine to zero; the total can be re-planned mid-run
    (a time budget shorter than the planned epochs), so the rate still decays before training ends."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup: float) -> None:
        self.optimizer, self.warmup, self.step_count = optimizer, warmup, 0
        self.total_steps = max(1, total_steps)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self._apply()

    def factor(self) -> float:
        warmup_steps = max(1, math.ceil(self.warmup * self.total_steps))
        if self.step_count < warmup_steps:
            return (self.step_count + 1) / warmup_steps
        progress = min(1.0, (self.step_count - warmup_steps) / max(1, self.total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        factor = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def replan(self, total_steps: int) -> None:
        self.total_steps = max(self.step_count + 1, total_steps)
        self._apply()


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, sample_weights: np.ndarray | None = None
) -> list[np.ndarray]:
    """One epoch of batches with little padding: draw the epoch's order (a shuffle, or a weighted draw for
    class-balanced sampling), sort each window of 50 batches by length, cut it into batches, shuffle the batches.
    """
    n = len(lengths)
    if sample_weights is None:
        order = rng.permutation(n)
    else:
        order = rng.choice(n, size=n, replace=True, p=sample_weights / sample_weights.sum())
    window = batch_size * 50
    batches = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(ids: Sequence[Sequence[int]], rows: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.array([len(ids[i]) for i in rows])
    width = int(lengths.max())
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for row, i in enumerate(rows):
        input_ids[row, : lengths[row]] = ids[i]
    mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def classification_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    sample_weight: torch.Tensor | None,
    focal_gamma: float | None,
) -> torch.Tensor:
    """Class-weighted cross-entropy, or focal loss (gamma) when `focal_gamma` is set; per-text weights scale
    each text's term (down-weighted doubtful labels). Normalised by the total weight, as weighted CE is."""
    logp = torch.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    per_text = -logp if focal_gamma is None else -((1 - logp.exp()) ** focal_gamma) * logp
    weight = torch.ones_like(per_text)
    if class_weight is not None and focal_gamma is None:
        weight = weight * class_weight[target]
    if sample_weight is not None:
        weight = weight * sample_weight
    return (per_text * weight).sum() / weight.sum().clamp(min=1e-12)


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside embedding tables: the ones every token's forward and backward multiply through."""
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)


def log_probs(logits: np.ndarray) -> np.ndarray:
    return F.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), dim=1).numpy()
