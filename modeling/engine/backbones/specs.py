"""Resolve any user-named backbone (pack name, local folder, local GGUF file, hub id) to a BackboneSpec."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from modeling.engine.backbones.packs import (
    PACKS,
    BackboneError,
    InstallProgress,
    convert_gguf,
    install_into,
    install_lock,
    install_pack,
    quick_check,
)
from modeling.engine.files import sha256_file
from modeling.engine.progress import ProgressFn

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "electra",
    "deberta",
    "deberta-v2",
    "mpnet",
    "albert",
    "camembert",
    "ernie",
    "modernbert",
}
_fingerprint_memo: dict[tuple, str] = {}


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    path: str  # a local transformers folder
    kind: str  # "encoder" | "decoder"
    fingerprint: str
    query_prefix: str = ""
    default_pooling: str = "mean"
    default_layer: str | int = "last"

    def to_dict(self) -> dict:
        return asdict(self)


def _kind_from_config(config: dict) -> str:
    architectures = config.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "decoder"
    return "encoder" if config.get("model_type") in _ENCODER_TYPES else "decoder"


def weights_fingerprint(folder: Path) -> str:
    """sha256 over the folder's weight files (sorted relative paths + their sha256); memoised by mtime/size."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise BackboneError(f"{folder} holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if stamp not in _fingerprint_memo:
        digest = hashlib.sha256()
        for p in files:
            digest.update(f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}\n".encode())
        _fingerprint_memo[stamp] = digest.hexdigest()
    return _fingerprint_memo[stamp]


def spec_for_folder(folder: Path, name: str | None = None) -> BackboneSpec:
    """Spec for a plain transformers folder (config.json + weights + tokenizer)."""
    folder = Path(folder).resolve()
    try:
        config = json.loads((folder / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{folder} is not a transformers model folder (config.json: {exc})") from None
    record = quick_check(folder)
    kind = record["kind"] if record else _kind_from_config(config)
    return BackboneSpec(
        name=name or (record or {}).get("name") or folder.name,
        path=str(folder),
        kind=kind,
        fingerprint=record["fingerprint"] if record else weights_fingerprint(folder),
        query_prefix=(record or {}).get("query_prefix", ""),
        default_pooling=(record or {}).get("default_pooling", "mean"),
        default_layer=(record or {}).get("default_layer", "last" if kind == "encoder" else "half"),
    )


def _spec_for_pack(name: str, model_root: Path, install: bool, progress: ProgressFn | None) -> BackboneSpec:
    folder = Path(model_root) / name
    if quick_check(folder) is None:
        if not install:
            raise BackboneError(
                f"backbone pack {name!r} is not installed in {model_root}; run `manage.py backbones install {name}`"
            )
        install_pack(name, model_root, progress)
    return spec_for_folder(folder, name)


def _spec_for_gguf(path: Path, model_root: Path, progress: ProgressFn | None) -> BackboneSpec:
    """Convert a local GGUF file once into model_root/gguf-<stem>-<sha12>/ and use that folder."""
    source_sha = sha256_file(path)
    name = f"gguf-{path.stem}-{source_sha[:12]}"
    folder = Path(model_root) / name

    steps = InstallProgress(name, progress)

    def build(staging: Path) -> dict:
        convert_gguf(path, staging, steps)
        config = json.loads((staging / "config.json").read_text())
        return {
            "name": name,
            "kind": _kind_from_config(config),
            "format": "gguf",
            "source_file": path.name,
            "source_sha256": source_sha,
            "default_pooling": "mean",
            "default_layer": "half",
        }

    with install_lock(Path(model_root), name):
        if quick_check(folder) is None:
            install_into(Path(model_root), name, build, steps)
    return spec_for_folder(folder, name)


def _spec_for_hub_id(repo_id: str) -> BackboneSpec:
    """Download (or reuse from the HF cache) a hub model, the way transformers' from_pretrained does."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"],
        )
    except Exception as exc:  # offline, unknown repo, gated repo: all end here
        raise BackboneError(
            f"cannot fetch hub model {repo_id!r} ({type(exc).__name__}); this needs network access to the "
            "Hugging Face hub, or download it elsewhere and point the app at the local folder"
        ) from exc
    return spec_for_folder(Path(folder), repo_id)


def resolve_backbone(
    name_or_path: str, model_root: Path | str | None, install: bool = False, progress: ProgressFn | None = None
) -> BackboneSpec:
    """Pack name, local transformers folder, local .gguf file, or hub id ("org/name") -> BackboneSpec.

    Packs must be installed already unless `install=True`; a GGUF file is converted once into model_root.
    A folder needs no model root; a pack or a GGUF file does.
    """
    name_or_path = str(name_or_path).strip()
    if not name_or_path:
        raise BackboneError("no backbone named")
    if name_or_path in PACKS:
        return _spec_for_pack(name_or_path, _required_root(model_root, name_or_path), install, progress)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return spec_for_folder(path)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise BackboneError(f"{path} is a file but not a .gguf checkpoint")
        return _spec_for_gguf(path.resolve(), _required_root(model_root, name_or_path), progress)
    if _HUB_ID.match(name_or_path) and not name_or_path.startswith((".", "/", "~")):
        return _spec_for_hub_id(name_or_path)
    raise BackboneError(
        f"unknown backbone {name_or_path!r}: not a pack ({', '.join(sorted(PACKS))}), "
        "an existing folder or .gguf file, or a hub id like 'org/model'"
    )


def _required_root(model_root: Path | str | None, name: str) -> Path:
    if model_root is None:
        raise BackboneError(f"backbone {name!r} lives in the model root, and none was given")
    return Path(model_root)
