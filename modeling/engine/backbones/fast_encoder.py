"""A lean inference forward for BERT-family encoders (BERT, XLM-R, e5, MiniLM) on CPU.

transformers' module-by-module forward is general; for feature extraction we run the same weights with fewer,
bigger steps, each measured on e5-small (hidden 384, ~12 tokens a text, bf16, one thread; ms per layer for a
2,048-token batch):
- Q, K and V come from one matmul on a concatenated weight, the 1/sqrt(head_dim) scaling folded into Q;
- in bf16 the weights are pre-packed once for oneDNN, which adds the bias inside the matmul (the separate
  broadcast bias add cost ~3 % of the forward);
- softmax over rows of ~12 keys: torch's kernel pays a fixed cost per row (2.6 ms/layer, 7 % of the
  forward); one exp over the whole score tensor in fp32, shifted by its global maximum, then a row sum, takes
  0.5 ms. A row whose sum underflows (scores spread by more than ~80) sends the batch to torch's softmax.
- a batch without padding skips the attention mask;
- `pack` lays several texts side by side in one row with a block-diagonal mask and positions restarting per
  text, so the matmuls see no padding at all and every row block is as large as asked;
- precision "int8" runs the linear layers through torch's dynamic INT8 kernels (weights quantised once per
  output channel, activations per call) over an fp32 model; the rest stays fp32.
Everything else (embeddings, LayerNorm, GELU) is the model's own modules, so the numbers match transformers'
to bf16 rounding (tests/engine/test_fast_encoder.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = {"bert", "xlm-roberta", "roberta", "camembert"}
_TINY = 1e-30  # exp(-80) ~ 1.8e-35 is still a normal fp32; a row sum below this underflowed


@dataclass(frozen=True)
class _Linear:
    """A linear layer ready to run: oneDNN-packed bf16, dynamic INT8 (fbgemm/oneDNN packed), or plain."""

    weight: torch.Tensor | object  # a tensor, or the INT8 kernel's packed params
    bias: torch.Tensor | None
    kind: str  # "onednn_bf16" | "int8_dynamic" | "plain"

    @classmethod
    def build(cls, weight: torch.Tensor, bias: torch.Tensor | None, precision: str = "model") -> _Linear:
        weight, bias = weight.detach().contiguous(), None if bias is None else bias.detach().contiguous()
        if precision == "int8":
            return cls(_int8_packed(weight.float(), None if bias is None else bias.float()), None, "int8_dynamic")
        if weight.dtype == torch.bfloat16 and _onednn_bf16_linear_works():
            return cls(torch.ops.mkldnn._reorder_linear_weight(weight, None), bias, "onednn_bf16")
        return cls(weight, bias, "plain")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "onednn_bf16":
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        if self.kind == "int8_dynamic":
            return torch.ops.quantized.linear_dynamic(x, self.weight, reduce_range=_int8_reduce_range())
        return F.linear(x, self.weight, self.bias)


def int8_scheme() -> str:
    """Names how INT8 features are computed here (part of their cache key: a different scheme, other numbers)."""
    return f"dynamic-per-channel-s8-u{7 if _int8_reduce_range() else 8}"


def _int8_packed(weight: torch.Tensor, bias: torch.Tensor | None):
    """Symmetric per-output-channel INT8 weights, packed once for torch's dynamic quantised linear."""
    scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(qweight, bias)


_onednn_verdict: bool | None = None
_reduce_range_verdict: bool | None = None


def _int8_reduce_range() -> bool:
    """Whether activations must be quantised to 7 bits: kernels without VNNI add u8 x s8 pairs in int16 and
    saturate at full range (torch's dynamic Linear always reduces). Full 8 bits, where the kernel is exact,
    brought e5-small's INT8 features from cosine 0.989 to 0.997 (mean, to fp32, smp2017 dev). Checked once on
    a product whose pair sums (2 x 255 x 127) overflow int16."""
    global _reduce_range_verdict
    if _reduce_range_verdict is None:
        x = torch.cat([torch.full((4, 64), 1.0), torch.full((4, 64), -0.001)], dim=1)
        w = torch.ones(8, 128)
        packed = _int8_packed(w, None)
        got = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False)
        _reduce_range_verdict = not torch.allclose(got, x @ w.t(), rtol=0.02, atol=0.5)
    return _reduce_range_verdict


def _onednn_bf16_linear_works() -> bool:
    """oneDNN's packed linear is a private op: use it only if it exists here and gives F.linear's numbers."""
    global _onednn_verdict
    if _onednn_verdict is None:
        try:
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(8, 16, generator=gen).bfloat16()
            w, b = torch.randn(4, 16, generator=gen).bfloat16(), torch.randn(4, generator=gen).bfloat16()
            packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
            got = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
            _onednn_verdict = bool(torch.allclose(got.float(), F.linear(x, w, b).float(), atol=0.1, rtol=0.02))
        except (AttributeError, RuntimeError, NotImplementedError):
            _onednn_verdict = False
    return _onednn_verdict


@dataclass(frozen=True)
class _Block:
    qkv: _Linear
    attn_out: _Linear
    attn_norm: torch.nn.LayerNorm
    ffn_in: _Linear
    act: torch.nn.Module
    ffn_out: _Linear
    out_norm: torch.nn.LayerNorm


def supports(model) -> bool:
    """True for a post-LayerNorm BERT-style encoder with absolute positions and exact GELU."""
    config = model.config
    return (
        config.model_type in SUPPORTED_MODEL_TYPES
        and not getattr(config, "is_decoder", False)
        and not getattr(config, "add_cross_attention", False)
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and config.hidden_act == "gelu"
        and hasattr(model, "embeddings")
        and hasattr(getattr(model, "encoder", None), "layer")
    )


_ROBERTA_POSITIONS = {"xlm-roberta", "roberta", "camembert"}  # positions start after the padding index
PRECISIONS = ("model", "int8")


@dataclass(frozen=True)
class Packed:
    """Texts laid side by side in rows of one width: no padding between them, only at the end of a row.

    `segment` holds, per position (rows x width, flattened), the index of its text in the caller's list, or
    -1 at a row's unused tail; `keep` is the block-diagonal mask (1 where query and key share a text)."""

    input_ids: torch.Tensor  # (rows, width)
    position_ids: torch.Tensor  # (rows, width)
    keep: torch.Tensor  # (rows, 1, width, width) float
    segment: torch.Tensor  # (rows * width,) long
    ends: torch.Tensor  # (n_texts,) flat position of each text's last token


def pack(ids: list[list[int]], width: int, pad_id: int, position_offset: int = 0) -> Packed:
    """Best-fit decreasing: each text, longest first, goes to the fullest row that still has room for it."""
    if not ids:
        raise ValueError("nothing to pack")
    if max(len(x) for x in ids) > width:
        raise ValueError(f"a text of {max(len(x) for x in ids)} tokens does not fit rows of {width}")
    rows: list[list[int]] = []  # text indices per row
    by_room: dict[int, list[int]] = {}  # free positions -> rows with exactly that much room
    for text in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
        need = len(ids[text])
        room = next((r for r in range(need, width + 1) if by_room.get(r)), None)
        if room is None:
            row, room = len(rows), width
            rows.append([])
        else:
            row = by_room[room].pop()
        rows[row].append(text)
        by_room.setdefault(room - need, []).append(row)
    return _packed_tensors(ids, rows, width, pad_id, position_offset)


def _packed_tensors(ids: list[list[int]], rows: list[list[int]], width: int, pad_id: int, offset: int) -> Packed:
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    positions = np.full((len(rows), width), offset, dtype=np.int64)
    segment = np.full((len(rows), width), -1, dtype=np.int64)
    ends = np.zeros(len(ids), dtype=np.int64)
    for r, texts in enumerate(rows):
        at = 0
        for text in texts:
            n = len(ids[text])
            input_ids[r, at : at + n] = ids[text]
            positions[r, at : at + n] = np.arange(offset, offset + n)
            segment[r, at : at + n] = text
            at += n
            ends[text] = r * width + at - 1
    # A tail position attends to itself only, so no query row of the mask is empty.
    mask_ids = np.where(segment >= 0, segment, -1 - np.arange(width)[None, :])
    keep = torch.from_numpy(mask_ids[:, :, None] == mask_ids[:, None, :]).float()[:, None]
    return Packed(
        torch.from_numpy(input_ids),
        torch.from_numpy(positions),
        keep,
        torch.from_numpy(segment.ravel()),
        torch.from_numpy(ends),
    )


class FastEncoder:
    """Runs `model`'s embeddings and its first k blocks; holds its own (packed) copies of the block weights.

    precision "model" keeps the model's dtype (bf16 through oneDNN's packed linear, fp32 plain); "int8" runs
    the linear layers on dynamic INT8 kernels and needs an fp32 model."""

    def __init__(self, model, precision: str = "model") -> None:
        if not supports(model):
            raise ValueError(f"not a supported BERT-family encoder: {model.config.model_type}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        config = model.config
        if precision == "int8" and model.embeddings.word_embeddings.weight.dtype != torch.float32:
            raise ValueError("INT8 linear layers run on an fp32 model")
        self.precision = precision
        self.embeddings = model.embeddings
        self.n_heads = int(config.num_attention_heads)
        self.head_dim = int(config.hidden_size) // self.n_heads
        self.position_offset = int(model.embeddings.padding_idx) + 1 if config.model_type in _ROBERTA_POSITIONS else 0
        self.blocks = [self._block(layer) for layer in model.encoder.layer]

    @property
    def linear_kernel(self) -> str:
        """Which kernel runs the linear layers: onednn_bf16, int8_dynamic or plain."""
        return self.blocks[0].qkv.kind if self.blocks else "plain"

    def _block(self, layer) -> _Block:
        attn = layer.attention.self
        scale = self.head_dim**-0.5
        with torch.no_grad():
            # Fold the score scaling into Q in fp32, then round once to the model's dtype.
            q_w, q_b = attn.query.weight.float() * scale, attn.query.bias.float() * scale
            dtype = attn.query.weight.dtype
            weight = torch.cat([q_w.to(dtype), attn.key.weight, attn.value.weight])
            bias = torch.cat([q_b.to(dtype), attn.key.bias, attn.value.bias])
        p = self.precision
        return _Block(
            qkv=_Linear.build(weight, bias, p),
            attn_out=_Linear.build(layer.attention.output.dense.weight, layer.attention.output.dense.bias, p),
            attn_norm=layer.attention.output.LayerNorm,
            ffn_in=_Linear.build(layer.intermediate.dense.weight, layer.intermediate.dense.bias, p),
            act=layer.intermediate.intermediate_act_fn,
            ffn_out=_Linear.build(layer.output.dense.weight, layer.output.dense.bias, p),
            out_norm=layer.output.LayerNorm,
        )

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_layers: int | None = None):
        """Hidden states (rows, width, hidden) after `n_layers` blocks (all by default; 0 = embeddings)."""
        rows, width = input_ids.shape
        hidden = self.embeddings(input_ids=input_ids)
        keep = None if bool(attention_mask.all()) else attention_mask[:, None, None, :].float()
        return self._blocks_forward(hidden, rows, width, keep, n_layers).view(rows, width, -1)

    @torch.inference_mode()
    def packed(self, packed: Packed, n_layers: int | None = None) -> torch.Tensor:
        """Hidden states (rows x width, hidden) of packed rows; `packed.segment` says whose each position is."""
        rows, width = packed.input_ids.shape
        hidden = self.embeddings(
            input_ids=packed.input_ids,
            position_ids=packed.position_ids,
            token_type_ids=torch.zeros_like(packed.input_ids),
        )
        return self._blocks_forward(hidden, rows, width, packed.keep, n_layers)

    def _blocks_forward(self, hidden: torch.Tensor, rows: int, width: int, keep, n_layers: int | None):
        x = hidden.reshape(rows * width, -1)
        for block in self.blocks[: len(self.blocks) if n_layers is None else n_layers]:
            x = self._block_forward(block, x, rows, width, keep)
        return x

    def _block_forward(self, block: _Block, x: torch.Tensor, rows: int, width: int, keep) -> torch.Tensor:
        qkv = block.qkv(x).view(rows, width, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.contiguous().unbind(0)  # each (rows, heads, width, head_dim)
        probs = attention_probs(q @ k.transpose(-1, -2), keep)
        context = (probs @ v).transpose(1, 2).reshape(rows * width, -1)
        x = block.attn_norm(block.attn_out(context).add_(x))
        return block.out_norm(block.ffn_out(block.act(block.ffn_in(x))).add_(x))


def attention_probs(scores: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """softmax(scores) over the last axis, with `keep` (1 = real key, 0 = padding) masking keys.

    Shifting by the tensor's global maximum instead of each row's keeps exp from overflowing; a row whose
    scores all lie ~80 below that maximum would underflow to a zero sum, and then torch's softmax decides.
    """
    probs = scores.to(torch.float32, copy=True)  # worked on in place; the scores stay for the fallback
    probs.sub_(probs.max()).exp_()
    if keep is not None:
        probs.mul_(keep)
    sums = probs.sum(-1, keepdim=True)
    if bool(sums.min() > _TINY):
        return probs.div_(sums).to(scores.dtype)
    if keep is not None:
        scores = scores.masked_fill(keep == 0, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)
