"""Label scoring on a decoder: P(label | instruction, text) for every label, not free generation.

The prompt is ``instruction prefix + text + output cue``. The instruction prefix (system line, the allowed
labels) is the same for every text, so its key/value cache is computed once and shared by every row of a
batch. Each row then packs the text, the cue and *all* label continuations side by side; a 4D attention mask
lets every label segment see the prefix, the text and its own earlier tokens only, with positions restarting
after the cue, so one forward scores every label of every text in the batch. Training uses the same packing
with only the gold label's segment, and computes the prefix once per step for the whole batch.

With ``label_tokens`` each label is one added output token (a row of a small trained matrix next to the
language-model head): a text then costs one forward over its own tokens, whatever the number of labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from modeling.engine.backbones.features import _load_tokenizer, bf16_is_faster
from modeling.engine.backbones.packs import BackboneError
from modeling.engine.backbones.specs import BackboneSpec
from modeling.engine.routes.base import Taxonomy

_SENTINEL = "\u2063TEXT\u2063"
DEFAULT_SYSTEM = "你是一个文本分类器，只回答给定类别中的一个。"


@dataclass(frozen=True)
class PromptParts:
    """The strings around a text: everything before it (cached) and the output cue after it."""

    prefix: str
    cue: str
    label_words: tuple[str, ...]  # what the decoder writes for each label, in label_keys order


def label_word(taxonomy: Taxonomy, key: str) -> str:
    info = taxonomy.get(key)
    return (info.name or key).strip() or key


def build_prompt(
    tokenizer,
    taxonomy: Taxonomy,
    label_keys: Sequence[str],
    definitions: bool = False,
    system: str = DEFAULT_SYSTEM,
) -> PromptParts:
    """System line, the allowed labels (with their definitions when asked), the text, the output cue.

    A tokenizer with a chat template gets the model's own chat format (the assistant turn is the cue);
    any other gets a plain ``…文本：<text>\\n类别：`` layout."""
    words = tuple(label_word(taxonomy, k) for k in label_keys)
    lines = []
    for key, word in zip(label_keys, words, strict=True):
        definition = taxonomy.get(key).definition.strip() if definitions else ""
        lines.append(f"- {word}：{definition}" if definition else f"- {word}")
    user = "从下列类别中选出最符合这段文本的一个，只回答类别名。\n类别：\n" + "\n".join(lines) + "\n文本："
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user + _SENTINEL}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prefix, cue = rendered.split(_SENTINEL)
        return PromptParts(prefix, cue, words)
    return PromptParts(f"{system}\n{user}", "\n类别：", words)


@dataclass(frozen=True)
class EncodedPrompt:
    prefix_ids: tuple[int, ...]
    cue_ids: tuple[int, ...]
    label_ids: tuple[tuple[int, ...], ...]  # each label's continuation, ending with the end-of-answer token
    max_text_tokens: int

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:16]


def end_token_id(tokenizer) -> int:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if im_end is not None and im_end != tokenizer.unk_token_id:
        return int(im_end)
    return int(tokenizer.eos_token_id)


def encode_prompt(tokenizer, parts: PromptParts, max_text_tokens: int) -> EncodedPrompt:
    def ids(s: str) -> tuple[int, ...]:
        return tuple(tokenizer(s, add_special_tokens=False)["input_ids"])

    end = end_token_id(tokenizer)
    labels = tuple((*ids(w), end) for w in parts.label_words)
    if len(set(labels)) != len(labels):
        raise BackboneError("two labels have the same label word; give them distinct names")
    return EncodedPrompt(ids(parts.prefix), ids(parts.cue), labels, max_text_tokens)


def text_ids(tokenizer, prompt: EncodedPrompt, texts: Sequence[str]) -> list[list[int]]:
    """Each text's tokens (cut to max_text_tokens) followed by the output cue."""
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=prompt.max_text_tokens)
    return [list(ids) + list(prompt.cue_ids) for ids in encoded["input_ids"]]


def resolve_dtype(dtype: str) -> str:
    if dtype == "auto":
        return "bf16" if bf16_is_faster() else "fp32"
    return dtype


def load_causal_lm(spec: BackboneSpec, dtype: str = "auto"):
    """A private (model, tokenizer) for the spec: adapters are injected in place, so it is never shared."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.kind != "decoder":
        raise BackboneError(f"{spec.name} is an encoder; this route needs a decoder backbone")
    torch_dtype = torch.bfloat16 if resolve_dtype(dtype) == "bf16" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch_dtype).eval()
        tokenizer = _load_tokenizer(spec.path, AutoTokenizer)
    except OSError as exc:
        raise BackboneError(f"cannot load decoder {spec.name} from {spec.path}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@dataclass
class Packed:
    """One batch of rows: text + cue, then label segments, with the mask and positions that keep them apart."""

    input_ids: object  # (B, Q) long
    position_ids: object  # (B, Q) long
    segment: np.ndarray  # (B, Q): 0 text part, j+1 label j's segment, -1 padding
    last: np.ndarray  # (B,) index of the cue's last token (its logits predict each label's first token)
    starts: np.ndarray  # (B, K) where label k's segment starts (-1 when it is not in the row)
    labels: list[list[int]]  # per row, the label indices packed into it

    @property
    def real_tokens(self) -> int:
        return int((self.segment >= 0).sum())


def pack(rows: Sequence[list[int]], prompt: EncodedPrompt, which: Sequence[Sequence[int]]) -> Packed:
    """Rows of text ids (with cue), each followed by the label segments listed in `which` for that row.

    A label segment holds the continuation's tokens except the last (nothing is predicted after it). Positions
    count from the text's first token; ``LabelScorer.hidden`` shifts them past the instruction prefix."""
    import torch

    n_labels = len(prompt.label_ids)
    bodies, segments, positions = [], [], []
    starts = np.full((len(rows), n_labels), -1, dtype=np.int64)
    for r, (ids, labels) in enumerate(zip(rows, which, strict=True)):
        body, seg, pos = list(ids), [0] * len(ids), list(range(len(ids)))
        for k in labels:
            inputs = prompt.label_ids[k][:-1]
            starts[r, k] = len(body)
            body += inputs
            seg += [k + 1] * len(inputs)
            pos += range(len(ids), len(ids) + len(inputs))
        bodies.append(body)
        segments.append(seg)
        positions.append(pos)
    width = max(len(b) for b in bodies)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    position_ids = np.zeros((len(rows), width), dtype=np.int64)
    segment = np.full((len(rows), width), -1, dtype=np.int64)
    for r, (body, seg, pos) in enumerate(zip(bodies, segments, positions, strict=True)):
        input_ids[r, : len(body)] = body
        position_ids[r, : len(body)] = pos
        segment[r, : len(body)] = seg
    last = np.array([len(ids) - 1 for ids in rows], dtype=np.int64)
    return Packed(
        torch.from_numpy(input_ids), torch.from_numpy(position_ids), segment, last, starts, [list(w) for w in which]
    )


def attention_mask(packed: Packed, context_len: int, dtype):
    """Additive (B, 1, Q, context + Q) mask: the context (virtual tokens + instruction prefix) is visible to every
    real position; the text part is causal; a label segment sees the text part and its own earlier tokens."""
    import torch

    seg = torch.from_numpy(packed.segment)
    q = seg.shape[1]
    causal = torch.ones(q, q, dtype=torch.bool).tril()
    real_q, real_k = (seg >= 0).unsqueeze(2), (seg >= 0).unsqueeze(1)
    same_or_text = (seg.unsqueeze(1) == 0) | (seg.unsqueeze(2) == seg.unsqueeze(1))
    allowed = causal & same_or_text & real_q & real_k
    context = real_q.expand(-1, -1, context_len).clone()
    context[:, :, :1] = True  # a padding row still sees one position, so its softmax has no empty row
    mask = torch.zeros(allowed.shape[0], q, context_len + q, dtype=dtype)
    mask.masked_fill_(~torch.cat([context, allowed], dim=2), torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def expand_cache(context_kv, batch: int):
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (k, v) in enumerate(context_kv):
        cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), layer)
    return cache


def cache_layers(cache) -> list[tuple]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class LabelScorer:
    """Runs a (possibly adapted) causal LM over packed rows against the shared instruction-prefix cache.

    ``virtual`` returns the per-layer (k, v) of prefix tuning's virtual tokens (batch 1), or None."""

    def __init__(self, model, prompt: EncodedPrompt, virtual=None, label_head=None) -> None:
        self.model = model
        self.lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = self.lm.get_decoder()
        self.lm_head = self.lm.get_output_embeddings()
        self.prompt = prompt
        self.virtual = virtual
        self.label_head = label_head  # (K, H) parameter: the added label tokens' output rows
        self.dtype = next(self.lm.parameters()).dtype
        self._cached = None

    def context(self):
        """Per-layer (k, v) of virtual tokens + instruction prefix, batch 1 (recomputed: it carries gradients)."""
        import torch
        from transformers import DynamicCache

        virtual = self.virtual() if self.virtual is not None else None
        cache = expand_cache(virtual, 1) if virtual is not None else DynamicCache()
        n_virtual = 0 if virtual is None else int(virtual[0][0].shape[2])
        ids = torch.tensor([self.prompt.prefix_ids])
        p = ids.shape[1]
        mask = torch.zeros(1, 1, p, n_virtual + p, dtype=self.dtype)
        mask[..., n_virtual:].masked_fill_(~torch.ones(p, p, dtype=torch.bool).tril(), torch.finfo(self.dtype).min)
        self.decoder(
            input_ids=ids, attention_mask=mask, position_ids=torch.arange(p)[None], cache=cache, use_cache=True
        )
        return cache_layers(cache)

    def cached_context(self):
        """The context computed once per model and reused by every inference call."""
        import torch

        if self._cached is None:
            with torch.inference_mode():
                self._cached = self.context()
        return self._cached

    def forget_context(self) -> None:
        self._cached = None

    def hidden(self, packed: Packed, context_kv):
        context_len = int(context_kv[0][0].shape[2])
        mask = attention_mask(packed, context_len, self.dtype)
        cache = expand_cache(context_kv, packed.input_ids.shape[0])
        out = self.decoder(
            input_ids=packed.input_ids,
            attention_mask=mask,
            position_ids=packed.position_ids + len(self.prompt.prefix_ids),
            cache=cache,
            use_cache=True,
        )
        return out.last_hidden_state

    def sequence_logprobs(self, packed: Packed, hidden):
        """(B, K) summed log P(label continuation) for the labels packed in each row (others: -inf)."""
        import torch

        n_rows, n_labels = packed.starts.shape
        scores = torch.full((n_rows, n_labels), float("-inf"))
        rows, cols, targets = [], [], []
        owners = []
        for r in range(n_rows):
            for k in packed.labels[r]:
                cont = self.prompt.label_ids[k]
                where = [int(packed.last[r])] + [int(packed.starts[r, k]) + i for i in range(len(cont) - 1)]
                rows += [r] * len(cont)
                cols += where
                targets += list(cont)
                owners += [(r, k)] * len(cont)
        logits = self.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)]).float()
        token_lp = logits.log_softmax(-1).gather(1, torch.tensor(targets)[:, None])[:, 0]
        flat = torch.tensor([r * n_labels + k for r, k in owners])
        summed = torch.zeros(n_rows * n_labels, dtype=token_lp.dtype).index_add(0, flat, token_lp)
        present = torch.zeros(n_rows * n_labels, dtype=torch.bool)
        present[flat] = True
        return torch.where(present.view(n_rows, n_labels), summed.view(n_rows, n_labels), scores)

    def label_token_logits(self, packed: Packed, hidden):
        import torch

        last = hidden[torch.arange(hidden.shape[0]), torch.from_numpy(packed.last)]
        return last.float() @ self.label_head.float().t()

    def last_hidden(self, packed: Packed, hidden):
        import torch

        return hidden[torch.arange(hidden.shape[0]), torch.from_numpy(packed.last)].float()

    def label_lengths(self) -> np.ndarray:
        return np.array([len(ids) for ids in self.prompt.label_ids], dtype=np.float32)


def batches_by_tokens(lengths: Sequence[int], per_row_extra: int, budget_tokens: int) -> list[np.ndarray]:
    """Longest first, rows grouped so that rows x (longest + extra) stays near the token budget."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    out, start = [], 0
    while start < len(order):
        width = int(lengths[order[start]]) + per_row_extra
        size = max(1, budget_tokens // max(width, 1))
        out.append(order[start : start + size])
        start += size
    return out


def score_texts(
    scorer: LabelScorer,
    tokenizer,
    texts: Sequence[str],
    label_tokens: bool = False,
    length_norm: bool = False,
    budget_tokens: int = 2048,
    with_features: bool = False,
):
    """(n, K) label log-probabilities (and the last cue position's hidden state when asked), input order."""
    import torch

    prompt = scorer.prompt
    n_labels = len(prompt.label_ids)
    rows = text_ids(tokenizer, prompt, texts)
    extra = 0 if label_tokens else sum(len(ids) - 1 for ids in prompt.label_ids)
    scores = np.zeros((len(rows), n_labels), dtype=np.float32)
    features = np.zeros((len(rows), scorer.lm.config.hidden_size), dtype=np.float32) if with_features else None
    context = scorer.cached_context()
    which_all = [] if label_tokens else list(range(n_labels))
    with torch.inference_mode():
        for batch in batches_by_tokens([len(r) for r in rows], extra, budget_tokens):
            packed = pack([rows[i] for i in batch], prompt, [which_all] * len(batch))
            hidden = scorer.hidden(packed, context)
            if label_tokens:
                out = scorer.label_token_logits(packed, hidden).log_softmax(-1)
            else:
                out = scorer.sequence_logprobs(packed, hidden)
            scores[batch] = out.numpy()
            if features is not None:
                last = torch.nn.functional.normalize(scorer.last_hidden(packed, hidden), dim=-1)
                features[batch] = last.numpy()
    if length_norm and not label_tokens:
        scores = scores / scorer.label_lengths()[None, :]
    return (scores, features) if with_features else scores


def score_without_cache(model, tokenizer, prompt: EncodedPrompt, text: str) -> np.ndarray:
    """The reference way: the full prompt + one label per row, every label of the text in one batch, no cache.

    Slow (every label row re-reads the instruction); the benchmark's naive side and the tests' ground truth.
    Only the positions that predict label tokens go through the language-model head."""
    import torch

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = list(prompt.prefix_ids) + text_ids(tokenizer, prompt, [text])[0]
    rows = [body + list(cont) for cont in prompt.label_ids]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    out = np.zeros(len(rows), dtype=np.float32)
    with torch.inference_mode():
        hidden = lm.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        for i, cont in enumerate(prompt.label_ids):
            positions = torch.arange(len(body) - 1, len(body) - 1 + len(cont))
            logprobs = lm.get_output_embeddings()(hidden[i, positions]).float().log_softmax(-1)
            out[i] = float(logprobs[torch.arange(len(cont)), torch.tensor(cont)].sum())
    return out


def generate_reason(model, tokenizer, text: str, label: str, definition: str = "", max_new_tokens: int = 48) -> str:
    """One short sentence, greedy, on why `text` belongs to `label` (for ``explain: "reason"``).

    Written by the base decoder (adapters off): a LoRA trained to emit label words only has lost its prose."""
    import torch

    about = f"（{definition}）" if definition else ""
    question = (
        f"文本：{text}\n类别：{label}{about}\n用一句话说明这段文本为什么属于这个类别，并指出文本中起决定作用的词。"
    )
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    else:
        prompt = question + "\n理由："
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    disable = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
    with torch.inference_mode(), disable:
        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        out = lm.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=end_token_id(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
        )
    reply = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    for stop in ("。", "\n", ". "):
        if stop in reply:
            return reply.split(stop)[0].strip() + ("。" if stop == "。" else "")
    return reply


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
