"""Small file helpers the whole engine shares: hashes, JSON and JSONL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """The sha256 of exactly the string a model sees (the feature cache's key of a text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_json(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class JsonlError(ValueError):
    """A JSONL line is not JSON or lacks a field; the message names the file and line."""


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file (blank lines skipped); each must be an object holding ``required``."""
    for _, record in numbered_jsonl(path, required):
        yield record


def numbered_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of a JSONL file, as ``read_jsonl``."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{number}: not JSON ({exc})") from exc
            missing = [key for key in required if not isinstance(record, dict) or key not in record]
            if missing:
                raise JsonlError(f"{path}:{number}: every line needs {', '.join(repr(k) for k in missing)}")
            yield number, record
