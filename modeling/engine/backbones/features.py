"""Feature extraction from a frozen backbone: length-sorted dynamic batches, masked pooling, chosen layer."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from modeling.engine.backbones.packs import BackboneError
from modeling.engine.backbones.specs import BackboneSpec

EncodeProgress = Callable[[int, int], None]  # (texts done, texts total)
_ENCODER_CLASSES_WITH_POOLER = {"bert", "roberta", "xlm-roberta", "camembert", "ernie"}
_loaded: dict[tuple[str, str], tuple] = {}  # (path, dtype) -> (model, tokenizer); one copy per process
_load_lock = threading.Lock()
_bf16_verdict: bool | None = None
_SPEED_ONLY = (
    "batch_tokens",
    "max_batch",
    "min_batch_tokens",
    "max_padding",
    "threads",
    "fast_forward",
    "parallel_batches",
    "layout",
    "pack_width",
)
DTYPES = ("auto", "fp32", "bf16", "int8")
LAYOUTS = ("auto", "padded", "packed")
PACKED_MARGIN = 0.05  # the share of time packed rows must save in the layout probe to be chosen
_fast: dict[tuple[str, str], object] = {}  # (path, dtype) -> FastEncoder over the shared model; one per process
_stream_pools: dict[tuple[int, int], object] = {}  # (pid, streams) -> ThreadPoolExecutor of 1-thread workers
# (path, dtype, streams, batch_tokens, pack_width) -> whether packed rows ran faster than padded batches
_packed_verdicts: dict[tuple, bool] = {}


@dataclass(frozen=True)
class FeatureConfig:
    pooling: str = "mean"  # "mean" (masked) | "last" (last real token)
    layer: str | int = "last"  # "last" | "half" | hidden_states index (0 = embeddings, negative from the end)
    max_len: int | None = None  # None: choose_max_len() picks the P95 of training lengths
    max_len_cap: int = 256
    # Padded tokens per batch (per slice when batches run side by side). On e5-small 2k was 8-12 % faster than
    # 16k on one thread; with two 1-thread slices 8k beat 2k (75 % against 72 % of the bf16 peak on a CPU
    # without AMX, and 1.2x under load: BENCHMARKS §17 and §21).
    batch_tokens: int = 8192
    max_batch: int = 2048
    min_batch_tokens: int = 1024  # below this a batch is not split to save padding
    max_padding: float = 0.2  # split a big-enough batch when the next text is this much shorter
    # "auto" picks bf16 or fp32 by a timing probe; "int8" runs an fp32 model with dynamic INT8 linear layers
    # (fast_encoder only). INT8 changes the numbers, so it is never picked by "auto": a version's quality
    # gate decides whether it may serve with it (versions.py).
    dtype: str = "auto"
    threads: int = 0  # 0 leaves torch's thread setting alone
    normalize: bool = True  # L2-normalise pooled vectors (the e5 convention; cosine-ready for `explain`)
    # BERT-family encoders run through fast_encoder.FastEncoder (fused QKV, pre-packed bf16 weights, a softmax
    # made for short rows): measured 12-15% more texts/s than transformers' forward on e5-small. False: transformers.
    fast_forward: bool = True
    # With several threads, cut each batch into one slice per thread and run the slices side by side, each on a
    # single torch thread, instead of splitting every matmul across threads: a 2k-token batch's matmuls are too
    # small to split well (e5-small bf16, 2 threads, 2,048 texts: 85% of the matmul peak instead of 80%).
    # Calls under min_batch_tokens (a prediction) keep torch's own threading.
    parallel_batches: bool = True
    # "packed": texts side by side in rows of pack_width tokens with a block-diagonal mask, so no padded
    # position reaches a matmul and a batch holds batch_tokens real tokens; "padded": length-sorted batches;
    # "auto": whichever a timing probe on this model and machine finds faster (fast_encoder only).
    layout: str = "auto"
    pack_width: int = 64

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "last"):
            raise BackboneError(f"pooling must be 'mean' or 'last', not {self.pooling!r}")
        if not (self.layer in ("last", "half") or isinstance(self.layer, int)):
            raise BackboneError(f"layer must be 'last', 'half' or an integer, not {self.layer!r}")
        if self.dtype not in DTYPES:
            raise BackboneError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.layout not in LAYOUTS:
            raise BackboneError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.pack_width < 8:
            raise BackboneError("pack_width must be at least 8 tokens")
        if self.max_len is not None and self.max_len < 2:
            raise BackboneError("max_len must be at least 2 tokens")

    @classmethod
    def for_backbone(cls, spec: BackboneSpec, **overrides) -> FeatureConfig:
        """The backbone's default pooling/layer, with explicit overrides on top."""
        return cls(**{"pooling": spec.default_pooling, "layer": spec.default_layer, **overrides})

    def key(self) -> str:
        """Stable identity of the settings that change the numbers (not speed-only knobs)."""
        fields = {k: v for k, v in asdict(self).items() if k not in _SPEED_ONLY}
        return json.dumps(fields, sort_keys=True)


def bf16_is_faster() -> bool:
    """Time a small matmul once per process: bf16 only pays off on CPUs with native support (AVX512-BF16/AMX)."""
    global _bf16_verdict
    if _bf16_verdict is None:
        import torch

        a, b = torch.randn(512, 1024), torch.randn(1024, 1024)
        timings = {}
        for dtype in (torch.float32, torch.bfloat16):
            x, y = a.to(dtype), b.to(dtype)
            x @ y  # warm-up
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                x @ y
                best = min(best, time.perf_counter() - start)
            timings[dtype] = best
        _bf16_verdict = timings[torch.bfloat16] < 0.8 * timings[torch.float32]
    return _bf16_verdict


def load_model(spec: BackboneSpec, dtype: str = "fp32") -> tuple:
    """(model, tokenizer) for the spec, loaded once per process and dtype, in eval mode.

    bf16 holds the weights themselves in bf16: measured 2x faster than fp32 weights under autocast (which
    re-casts every weight on every call), with features at cosine >= 0.9999 to fp32 on e5.
    """
    dtype = "fp32" if dtype == "int8" else dtype  # INT8 kernels quantise an fp32 model's weights
    key = (spec.path, dtype)
    with _load_lock:
        if key not in _loaded:
            from transformers import AutoConfig, AutoModel, AutoTokenizer

            try:
                config = AutoConfig.from_pretrained(spec.path)
                kwargs = {}
                if config.model_type in _ENCODER_CLASSES_WITH_POOLER:
                    # Plain matmul+softmax attention: SDPA's CPU flash kernel is slow for the short sequences
                    # (10-20 tokens) we feed it, measured 6-10% faster end to end on e5-small.
                    kwargs = {"add_pooling_layer": False, "attn_implementation": "eager"}
                torch_dtype = "bfloat16" if dtype == "bf16" else "float32"
                model = AutoModel.from_pretrained(spec.path, dtype=torch_dtype, **kwargs).eval()
                if dtype == "bf16":
                    _add_bias_after_matmul(model)
                tokenizer = _load_tokenizer(spec.path, AutoTokenizer)
            except OSError as exc:
                raise BackboneError(f"cannot load backbone {spec.name} from {spec.path}: {exc}") from exc
            if tokenizer.pad_token_id is None:  # decoder tokenizers often lack one; padding is masked anyway
                tokenizer.pad_token = tokenizer.eos_token
            _loaded[key] = (model, tokenizer)
        return _loaded[key]


def _fast_encoder(spec: BackboneSpec, dtype: str, model):
    """The process's FastEncoder for this model (it holds packed copies of the weights), or None when the
    architecture is not one it runs."""
    from modeling.engine.backbones import fast_encoder

    if not fast_encoder.supports(model):
        return None
    with _load_lock:
        if (spec.path, dtype) not in _fast:
            _fast[(spec.path, dtype)] = fast_encoder.FastEncoder(model, _fast_precision(dtype))
        return _fast[(spec.path, dtype)]


def _own_fast(model, dtype: str):
    """A FastEncoder over a caller's private model, not shared through the process cache."""
    from modeling.engine.backbones import fast_encoder

    return fast_encoder.FastEncoder(model, _fast_precision(dtype)) if fast_encoder.supports(model) else None


def _fast_precision(dtype: str) -> str:
    return "int8" if dtype == "int8" else "model"


def _linear_then_bias(self, x):
    import torch  # the engine imports torch lazily; after the first call this is a dict lookup

    return torch.matmul(x, self.weight.t()).add_(self.bias)


def _add_bias_after_matmul(model) -> None:
    """bf16 nn.Linear goes through addmm, which first copies the broadcast bias into the output and then
    accumulates the matmul onto it; a plain matmul with an in-place bias add is measured 4-6% faster end to end
    (features at cosine >= 0.9999 to the addmm ones). Only this process's private copy of the model is changed."""
    import types

    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.bias is not None:
            module.forward = types.MethodType(_linear_then_bias, module)


def load_tokenizer(path: str):
    """The folder's tokenizer as extraction uses it (a pad token even for decoders), without loading weights."""
    from transformers import AutoTokenizer

    tokenizer = _load_tokenizer(path, AutoTokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_tokenizer(path: str, auto_tokenizer):
    """Honour a folder that declares a plain tokenizers backend: AutoTokenizer would otherwise pick the
    model type's own tokenizer class (e.g. Qwen2Tokenizer) and rebuild it with a different pre-tokenizer."""
    from transformers import PreTrainedTokenizerFast

    try:
        declared = json.loads((Path(path) / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (FileNotFoundError, json.JSONDecodeError):
        declared = None
    if declared in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return PreTrainedTokenizerFast.from_pretrained(path)
    return auto_tokenizer.from_pretrained(path)


class _EarlyExit(Exception):
    def __init__(self, hidden) -> None:
        self.hidden = hidden


# The model is shared by every extractor (and thread) in the process, so the early-exit hooks stay
# installed and only fire for the block the *current thread* asked to stop after.
_exit_target = threading.local()


def _early_exit_hook(module, _inputs, output):
    if getattr(_exit_target, "module", None) is module:
        raise _EarlyExit(output[0] if isinstance(output, tuple) else output)


def _install_exit_hook(block) -> None:
    with _load_lock:
        if not getattr(block, "_sceneclf_exit_hook", False):
            block.register_forward_hook(_early_exit_hook)
            block._sceneclf_exit_hook = True


def _layer_stack(model, n_layers: int):
    """The ModuleList of transformer blocks (encoder.layer for BERT, layers for Qwen/Llama)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    return None


@contextmanager
def _threads(n: int):
    import torch

    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_private_model(model, dtype: str):
    """A caller's own model (e.g. fine-tuned weights of a pack) in the inference form load_model gives a
    shared one: eval mode, the chosen dtype, bias after the matmul in bf16."""
    import torch

    model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float32).eval()
    if dtype == "bf16":
        _add_bias_after_matmul(model)
    return model


class FeatureExtractor:
    def __init__(
        self, spec: BackboneSpec, config: FeatureConfig | None = None, model_and_tokenizer: tuple | None = None
    ) -> None:
        """``model_and_tokenizer``: run this model (changed weights of spec's architecture, e.g. a fine-tuned
        encoder) instead of the process's shared copy of spec's weights; it is cast to the resolved dtype."""
        self.spec = spec
        self.config = config or FeatureConfig.for_backbone(spec)
        self.dtype = self._resolve_dtype()
        if model_and_tokenizer is None:
            self.model, self.tokenizer = load_model(spec, self.dtype)
        else:
            self.model, self.tokenizer = (
                prepare_private_model(model_and_tokenizer[0], self.dtype),
                model_and_tokenizer[1],
            )
        self.n_layers = int(self.model.config.num_hidden_layers)
        self.layer_index = self._resolve_layer(self.config.layer)
        self.max_len = self.config.max_len or self.config.max_len_cap
        # Decoders park a huge activation on the first position (norm ~60x the others in Qwen2.5's middle
        # layers); averaging it in makes every text's vector nearly identical, so mean pooling skips it.
        self.skip_first = spec.kind == "decoder" and self.config.pooling == "mean"
        self._stack = _layer_stack(self.model, self.n_layers)
        self._fast = None
        if self.config.fast_forward:
            self._fast = (
                _fast_encoder(spec, self.dtype, self.model)
                if model_and_tokenizer is None
                else _own_fast(self.model, self.dtype)
            )
        if self.dtype == "int8" and self._fast is None:
            raise BackboneError(f"int8 needs the lean encoder forward, which {spec.name} does not run on")
        self._packed = self.config.layout == "packed"

    def _resolve_layer(self, layer: str | int) -> int:
        if layer == "last":
            return self.n_layers
        if layer == "half":
            return self.n_layers // 2
        index = layer if layer >= 0 else self.n_layers + 1 + layer
        if not 0 <= index <= self.n_layers:
            raise BackboneError(f"layer {layer} out of range for a {self.n_layers}-layer backbone")
        return index

    def _resolve_dtype(self) -> str:
        if self.config.dtype != "auto":
            return self.config.dtype
        return "bf16" if bf16_is_faster() else "fp32"

    @property
    def feature_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def cache_key(self) -> str:
        """Everything that changes the numbers: backbone fingerprint, layer, pooling, max_len, dtype used."""
        parts = {
            "fingerprint": self.spec.fingerprint,
            "layer": self.layer_index,
            "pooling": self.config.pooling,
            "max_len": self.max_len,
            "dtype": self.dtype,
            "normalize": self.config.normalize,
            "prefix": self.spec.query_prefix,
            "skip_first": self.skip_first,
        }
        if self.dtype == "int8":
            from modeling.engine.backbones.fast_encoder import int8_scheme

            parts["int8"] = int8_scheme()
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]

    def describe(self) -> dict:
        return {
            "backbone": self.spec.name,
            "fingerprint": self.spec.fingerprint,
            "kind": self.spec.kind,
            "pooling": self.config.pooling,
            "layer": self.layer_index,
            "n_layers": self.n_layers,
            "max_len": self.max_len,
            "dtype": self.dtype,
            "normalize": self.config.normalize,
            "skip_first_token": self.skip_first,
            "query_prefix": self.spec.query_prefix,
            "feature_dim": self.feature_dim,
            "cache_key": self.cache_key(),
        }

    def _token_ids(self, texts: Sequence[str], max_len: int) -> list[list[int]]:
        prefixed = [self.spec.query_prefix + t for t in texts]
        return self.tokenizer(prefixed, truncation=True, max_length=max_len)["input_ids"]

    def choose_max_len(self, texts: Sequence[str]) -> int:
        """P95 of tokenised lengths (with prefix and special tokens), capped; becomes this extractor's max_len."""
        if texts:
            lengths = [len(ids) for ids in self._token_ids(texts, self.config.max_len_cap)]
            self.max_len = int(min(self.config.max_len_cap, max(2, np.ceil(np.percentile(lengths, 95)))))
        return self.max_len

    def _batches(self, lengths: np.ndarray, streams: int = 1) -> list[np.ndarray]:
        """Longest first; a batch grows while (rows x its longest row) stays within streams x batch_tokens.

        Once a batch is big enough to keep the matmuls efficient (streams x min_batch_tokens), it is closed
        early when the next text is much shorter than its longest, since padded positions are wasted work.
        """
        order = np.argsort(-lengths, kind="stable")
        cfg = self.config
        batches, start = [], 0
        while start < len(order):
            longest = max(int(lengths[order[start]]), 1)
            limit = max(1, min(cfg.max_batch * streams, streams * cfg.batch_tokens // longest))
            end = start + 1
            while end < len(order) and end - start < limit:
                big_enough = (end - start) * longest >= streams * cfg.min_batch_tokens
                if big_enough and lengths[order[end]] < (1 - cfg.max_padding) * longest:
                    break
                end += 1
            batches.append(order[start:end])
            start = end
        return batches

    def _forward(self, input_ids, attention_mask):
        if self._fast is not None:
            return self._fast(input_ids, attention_mask, self.layer_index)
        want_hidden = self.layer_index < self.n_layers
        if want_hidden and self._stack is not None and self.layer_index > 0:
            # Stop after block k-1 instead of running the whole stack: half the work for a mid layer.
            block = self._stack[self.layer_index - 1]
            _install_exit_hook(block)
            _exit_target.module = block
            try:
                self.model(input_ids=input_ids, attention_mask=attention_mask)
            except _EarlyExit as exit_:
                return exit_.hidden
            finally:
                _exit_target.module = None
            raise BackboneError("early exit hook did not fire")  # pragma: no cover
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=want_hidden)
        if want_hidden:
            return out.hidden_states[self.layer_index]
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def _pool(self, hidden, mask, lengths):
        import torch

        hidden = hidden.float()
        if self.config.pooling == "last":
            pooled = hidden[torch.arange(hidden.shape[0]), lengths - 1]
        else:
            if self.skip_first:
                mask = mask.clone()
                mask[lengths > 1, 0] = 0  # a one-token text keeps its only position
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self.config.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def encode(self, texts: Sequence[str], progress: EncodeProgress | None = None) -> np.ndarray:
        """float32 matrix (len(texts), feature_dim) in input order."""
        texts = list(texts)
        out = np.zeros((len(texts), self.feature_dim), dtype=np.float32)
        if not texts:
            return out
        ids = self._token_ids(texts, self.max_len)
        lengths = np.array([len(x) for x in ids])
        if (lengths == 0).any():
            empty = np.flatnonzero(lengths == 0)[:5].tolist()
            raise BackboneError(f"texts at positions {empty} produce no tokens (empty or whitespace only)")
        with _threads(self.config.threads):
            streams = self._streams(int(lengths.sum()))
            run = self._encode_packed if self._use_packed(ids, lengths, streams) else self._encode_batch
            chunks = self._chunks(lengths, streams, packed=run == self._encode_packed)
            if streams > 1 and len(chunks) > 1:
                pooled_chunks = _stream_pool(streams).map(lambda c: run(ids, lengths, c), chunks)
            else:
                pooled_chunks = (run(ids, lengths, c) for c in chunks)
            done = 0
            for chunk, pooled in zip(chunks, pooled_chunks, strict=True):  # in order, on the calling thread
                out[chunk] = pooled
                done += len(chunk)
                if progress is not None:
                    progress(done, len(texts))
        return out

    def _chunks(self, lengths: np.ndarray, streams: int, packed: bool) -> list[np.ndarray]:
        """Each batch is `streams` times the size, cut into equal slices that run side by side: every stream
        stays busy to the last batch, whatever the batch count. Padded slices share a width (the same work);
        packed slices hold the same number of real tokens."""
        if packed:
            batches = _token_runs(lengths, np.arange(len(lengths)), streams * self.config.batch_tokens)
            return [
                chunk for batch in batches for chunk in _token_runs(lengths, batch, -(-lengths[batch].sum() // streams))
            ]
        batches = self._batches(lengths, streams)
        return [chunk for batch in batches for chunk in np.array_split(batch, min(streams, len(batch)))]

    def _use_packed(self, ids: list[list[int]], lengths: np.ndarray, streams: int) -> bool:
        """Packing pays only on jobs big enough to fill rows; "auto" asks the process's timing probe."""
        if self._fast is None or self.config.layout == "padded" or lengths.sum() < self.config.min_batch_tokens:
            return False
        if self.config.layout == "packed":
            return True
        key = (self.spec.path, self.dtype, streams, self.config.batch_tokens, self.config.pack_width)
        with _load_lock:
            if key not in _packed_verdicts:
                with _threads(1 if streams > 1 else 0):
                    _packed_verdicts[key] = self._packed_is_faster(ids, lengths)
            return _packed_verdicts[key]

    def _packed_is_faster(self, ids: list[list[int]], lengths: np.ndarray) -> bool:
        """Time one batch of this job's own texts through every block both ways (best of 3, alternated): the
        padding it saves and the wider attention it costs both depend on the texts and the CPU. Packing must
        win by PACKED_MARGIN: a near tie in the probe did not hold over whole jobs (measured on a CPU without
        AMX: the probe chose packed, which then ran 64 % of the bf16 peak against padded batches' 72 %)."""
        import torch

        from modeling.engine.backbones.fast_encoder import pack

        sample = _token_runs(lengths, np.arange(len(lengths)), self.config.batch_tokens)[0]
        n_layers = self.layer_index
        sub_ids, sub_lengths = [ids[i] for i in sample], lengths[sample]
        width = max(self.config.pack_width, int(sub_lengths.max()))

        def padded() -> None:
            for batch in self._batches(sub_lengths):
                rows, mask = self._padded_rows(sub_ids, sub_lengths, batch)
                self._fast(rows, mask, n_layers)

        def packed() -> None:
            self._fast.packed(pack(sub_ids, width, self.tokenizer.pad_token_id, self._fast.position_offset), n_layers)

        with torch.inference_mode():
            padded(), packed()  # warm-up
            seconds = {padded: [], packed: []}
            for _ in range(3):
                for way, times in seconds.items():
                    start = time.perf_counter()
                    way()
                    times.append(time.perf_counter() - start)
        return min(seconds[packed]) < (1.0 - PACKED_MARGIN) * min(seconds[padded])

    def _streams(self, real_tokens: int) -> int:
        """How many slices of a batch run side by side: one per thread, when parallel_batches is on and the job
        has enough tokens for each slice to keep its matmuls efficient."""
        import torch

        if not self.config.parallel_batches or real_tokens < self.config.min_batch_tokens:
            return 1
        return max(1, self.config.threads or torch.get_num_threads())

    def _encode_batch(self, ids: list[list[int]], lengths: np.ndarray, batch: np.ndarray) -> np.ndarray:
        import torch

        input_ids, mask = self._padded_rows(ids, lengths, batch)
        with torch.inference_mode():
            hidden = self._forward(input_ids, mask)
            return self._pool(hidden, mask, torch.as_tensor(lengths[batch])).float().numpy()

    def _padded_rows(self, ids: list[list[int]], lengths: np.ndarray, batch: np.ndarray) -> tuple:
        """(input_ids, attention_mask) of a batch, padded to its longest text."""
        import torch

        width = int(lengths[batch].max())
        rows = np.full((len(batch), width), self.tokenizer.pad_token_id, dtype=np.int64)
        for row, i in enumerate(batch):
            rows[row, : lengths[i]] = ids[i]
        mask = (np.arange(width) < lengths[batch][:, None]).astype(np.int64)
        return torch.from_numpy(rows), torch.from_numpy(mask)

    def _encode_packed(self, ids: list[list[int]], lengths: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        import torch

        from modeling.engine.backbones.fast_encoder import pack

        width = max(self.config.pack_width, int(lengths[chunk].max()))
        packed = pack([ids[i] for i in chunk], width, self.tokenizer.pad_token_id, self._fast.position_offset)
        with torch.inference_mode():
            hidden = self._fast.packed(packed, self.layer_index)
            return self._pool_segments(hidden, packed, torch.as_tensor(lengths[chunk])).numpy()

    def _pool_segments(self, hidden, packed, lengths):
        """Pool packed positions per text: the mean of its positions or its last one (skip_first is decoder-only,
        and decoders never pack)."""
        import torch

        hidden = hidden.float()
        if self.config.pooling == "last":
            pooled = hidden[packed.ends]
        else:
            real = torch.nonzero(packed.segment >= 0).squeeze(1)
            sums = torch.zeros(len(lengths), hidden.shape[1]).index_add_(0, packed.segment[real], hidden[real])
            pooled = sums / lengths.clamp(min=1).unsqueeze(1).to(hidden.dtype)
        if self.config.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled


def _token_runs(lengths: np.ndarray, order: np.ndarray, budget: int) -> list[np.ndarray]:
    """Consecutive runs of `order` whose token counts sum to at most `budget` (at least one text each)."""
    runs, start, total = [], 0, 0
    for end, i in enumerate(order):
        if end > start and total + lengths[i] > budget:
            runs.append(order[start:end])
            start, total = end, 0
        total += int(lengths[i])
    runs.append(order[start:])
    return runs


def _stream_pool(streams: int):
    """The process's pool of `streams` worker threads, each running torch ops on one thread of its own.

    Keyed by pid: a pool inherited through fork (Celery's prefork) has no live threads in the child.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import torch

    key = (os.getpid(), streams)
    with _load_lock:
        if key not in _stream_pools:
            _stream_pools[key] = ThreadPoolExecutor(
                streams, thread_name_prefix="sceneclf-encode", initializer=torch.set_num_threads, initargs=(1,)
            )
        return _stream_pools[key]
