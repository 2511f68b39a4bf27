"""Atomic artifact folders with a sha256 manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modeling.engine.artifacts import ArtifactError, verify_artifacts, write_artifacts


def fill(tmp: Path) -> None:
    (tmp / "weights.bin").write_bytes(b"\x00\x01weights")
    (tmp / "sub").mkdir()
    (tmp / "sub" / "config.json").write_text('{"a": 1}', encoding="utf-8")


def test_manifest_lists_every_file_with_its_sha256(tmp_path):
    final = tmp_path / "versions" / "v1"
    manifest = write_artifacts(final, fill)
    assert manifest["files"] == {
        "sub/config.json": hashlib.sha256(b'{"a": 1}').hexdigest(),
        "weights.bin": hashlib.sha256(b"\x00\x01weights").hexdigest(),
    }
    assert json.loads((final / "manifest.json").read_text())["files"] == manifest["files"]
    assert verify_artifacts(final, manifest) == manifest
    assert [p.name for p in final.parent.iterdir()] == ["v1"]  # no temp folder left behind


def test_crash_inside_write_fn_leaves_nothing(tmp_path):
    final = tmp_path / "v1"

    def crash(tmp: Path) -> None:
        fill(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_artifacts(final, crash)
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_never_overwritten(tmp_path):
    final = tmp_path / "v1"
    write_artifacts(final, fill)
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifacts(final, fill)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "weights.bin").write_bytes(b"tampered"), "weights.bin: sha256"),
        (lambda d: (d / "sub" / "config.json").unlink(), "missing file sub/config.json"),
        (lambda d: (d / "extra.txt").write_text("x"), "unexpected file extra.txt"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
    ],
)
def test_damaged_folder_fails_verification(tmp_path, damage, message):
    final = tmp_path / "v1"
    write_artifacts(final, fill)
    damage(final)
    with pytest.raises(ArtifactError, match=message):
        verify_artifacts(final)


def test_replaced_files_and_manifest_are_caught_by_the_recorded_manifest(tmp_path):
    recorded = write_artifacts(tmp_path / "v1", fill)
    forged = write_artifacts(tmp_path / "forged", lambda d: (d / "weights.bin").write_bytes(b"other"))
    verify_artifacts(tmp_path / "forged")  # self-consistent on its own
    with pytest.raises(ArtifactError, match="differs from the expected manifest"):
        verify_artifacts(tmp_path / "forged", recorded)
    assert forged["files"] != recorded["files"]


def test_missing_folder_and_empty_write_are_errors(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        verify_artifacts(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="no files"):
        write_artifacts(tmp_path / "empty", lambda d: None)
    assert not (tmp_path / "empty").exists()
