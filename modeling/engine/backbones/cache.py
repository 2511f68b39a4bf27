"""On-disk feature cache: one directory per extractor cache key, holding append-only shard files.

Each shard is one `.npz` (text sha256 index + float32 matrix) written to a temp file and renamed into
place, so a killed worker never leaves a half-written shard under a shard name. Different processes
write different shard names (uuid), so two writers never collide. A shard that fails to load (disk
damage) is moved aside as `*.corrupt` and its texts are simply extracted again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modeling.engine.backbones.features import EncodeProgress, FeatureExtractor
from modeling.engine.files import text_sha256

__all__ = ["FeatureCache", "cached_encode", "text_sha256"]

logger = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SHARD_GLOB = "shard-*.npz"


class FeatureCache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        # namespace -> (shard names already read, sha -> vector); only new shards are read on later calls
        self._memo: dict[str, tuple[set[str], dict[str, np.ndarray]]] = {}

    def namespace_dir(self, namespace: str) -> Path:
        if not re.fullmatch(r"[0-9A-Za-z_.-]+", namespace):
            raise ValueError(f"invalid cache namespace {namespace!r}")
        return self.root / namespace

    def _refresh(self, namespace: str) -> dict[str, np.ndarray]:
        seen, vectors = self._memo.setdefault(namespace, (set(), {}))
        folder = self.namespace_dir(namespace)
        if not folder.is_dir():
            return vectors
        for shard in sorted(folder.glob(SHARD_GLOB)):
            if shard.name in seen:
                continue
            seen.add(shard.name)
            loaded = self._load_shard(shard)
            if loaded is not None:
                hashes, features = loaded
                vectors.update(zip(hashes, features, strict=True))
        return vectors

    @staticmethod
    def _load_shard(shard: Path) -> tuple[list[str], np.ndarray] | None:
        try:
            with np.load(shard, allow_pickle=False) as data:
                hashes = [str(h) for h in data["hashes"]]
                features = np.asarray(data["features"], dtype=np.float32)
            if features.ndim != 2 or len(hashes) != features.shape[0] or not all(map(_SHA256.match, hashes)):
                raise ValueError("inconsistent shard contents")
            return hashes, features
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("feature cache: ignoring corrupt shard %s (%s)", shard.name, type(exc).__name__)
            with contextlib.suppress(OSError):  # another process may have moved it already
                os.replace(shard, shard.with_suffix(".corrupt"))
            return None

    def get(self, namespace: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors for those of `hashes` that are present."""
        vectors = self._refresh(namespace)
        return {h: vectors[h] for h in hashes if h in vectors}

    def put(self, namespace: str, hashes: Sequence[str], features: np.ndarray) -> Path | None:
        """Write one new shard atomically (temp file + fsync + rename)."""
        if len(hashes) == 0:
            return None
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.shape[0] != len(hashes):
            raise ValueError("one feature row per hash is required")
        folder = self.namespace_dir(namespace)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}.npz"
        tmp = folder / f".tmp-{name}"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, hashes=np.array(list(hashes), dtype="U64"), features=features)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        seen, vectors = self._memo.setdefault(namespace, (set(), {}))
        seen.add(name)
        vectors.update(zip(hashes, features, strict=True))
        return folder / name

    def stats(self, namespace: str) -> dict:
        folder = self.namespace_dir(namespace)
        shards = list(folder.glob(SHARD_GLOB)) if folder.is_dir() else []
        return {
            "shards": len(shards),
            "vectors": len(self._refresh(namespace)),
            "bytes": sum(p.stat().st_size for p in shards),
        }


def cached_encode(
    extractor: FeatureExtractor,
    texts: Sequence[str],
    hashes: Sequence[str] | None,
    cache: FeatureCache,
    progress: EncodeProgress | None = None,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, int]:
    """Features for `texts` in input order, extracting only texts whose hash is not cached yet.

    `hashes` are the texts' sha256 hex digests (pass None to compute them); returns (matrix, n_extracted).
    Misses are extracted and stored chunk by chunk, so a killed worker keeps the chunks it finished.
    """
    texts = list(texts)
    hashes = [text_sha256(t) for t in texts] if hashes is None else list(hashes)
    if len(hashes) != len(texts):
        raise ValueError("texts and hashes differ in length")
    bad = [h for h in hashes if not _SHA256.match(h)]
    if bad:
        raise ValueError(f"{len(bad)} hashes are not sha256 hex digests")
    namespace = extractor.cache_key()
    found = cache.get(namespace, hashes)
    missing: dict[str, str] = {}
    for text, h in zip(texts, hashes, strict=True):
        if h not in found:
            missing.setdefault(h, text)  # duplicates inside one call are extracted once
    todo = list(missing.items())
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]

        def chunk_progress(done: int, _total: int, offset: int = start) -> None:
            if progress is not None:
                progress(offset + done, len(todo))

        new = extractor.encode([text for _, text in chunk], progress=chunk_progress)
        cache.put(namespace, [h for h, _ in chunk], new)
        found.update(zip((h for h, _ in chunk), new, strict=True))
    if not todo and progress is not None:
        progress(len(texts), len(texts))
    out = np.zeros((len(texts), extractor.feature_dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        out[i] = found[h]
    return out, len(missing)
