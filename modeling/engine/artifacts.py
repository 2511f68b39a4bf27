"""Atomic, hash-verified artifact folders.

A model version's folder is written into a temporary sibling folder, hashed into ``manifest.json`` and then
renamed into place in one ``os.rename``: readers see either no folder or a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from modeling.engine.files import sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


class ArtifactError(Exception):
    """An artifact folder is missing, incomplete or does not match its manifest."""


def hash_tree(directory: Path) -> dict[str, str]:
    """sha256 of every file under directory (except the manifest), keyed by its relative POSIX path."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() != MANIFEST)
    return {p.relative_to(directory).as_posix(): sha256_file(p) for p in files}


def _fsync_tree(directory: Path) -> None:
    # Data must be on disk before the rename publishes the folder, or a power cut could expose empty files.
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def write_artifacts(final_dir: Path, write_fn: Callable[[Path], None]) -> dict:
    """Let write_fn fill a temp folder next to final_dir, add manifest.json, rename into place; return the manifest.

    If write_fn raises, the temp folder is removed and nothing appears at final_dir. An existing final_dir is
    never overwritten.
    """
    final_dir = Path(final_dir)
    if final_dir.exists():
        raise ArtifactError(f"artifact folder {final_dir} already exists; versions are never overwritten")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    try:
        write_fn(tmp_dir)
        files = hash_tree(tmp_dir)
        if not files:
            raise ArtifactError("write_fn wrote no files")
        manifest = {"format": MANIFEST_FORMAT, "created_at": datetime.now(UTC).isoformat(), "files": files}
        (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        _fsync_tree(tmp_dir)
        os.rename(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return manifest


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: the folder was not written by write_artifacts or is incomplete")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path} has no 'files' table")
    return manifest


def verify_artifacts(directory: Path, expected_manifest: dict | None = None) -> dict:
    """Re-hash every file; raise ArtifactError on a missing, extra or changed file. Returns the manifest.

    ``expected_manifest`` (e.g. the copy stored in the database) must list the same files and hashes as the
    folder's own manifest, so a folder whose files *and* manifest were replaced is caught too.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"artifact folder {directory} does not exist")
    manifest = read_manifest(directory)
    listed = manifest["files"]
    if expected_manifest is not None and expected_manifest.get("files") != listed:
        raise ArtifactError(f"{directory / MANIFEST} differs from the expected manifest (recorded at creation)")
    actual = hash_tree(directory)
    problems = [f"missing file {name}" for name in sorted(set(listed) - set(actual))]
    problems += [f"unexpected file {name}" for name in sorted(set(actual) - set(listed))]
    problems += [
        f"{name}: sha256 {actual[name]} != expected {listed[name]}"
        for name in sorted(set(listed) & set(actual))
        if actual[name] != listed[name]
    ]
    if problems:
        raise ArtifactError(f"artifact folder {directory} failed verification: " + "; ".join(problems))
    return manifest
