"""The training set of an incremental run: the gold labels new since the previous version plus a replay sample
of the old ones, so that continuing a fine-tuned model on new data does not forget the old scenes.

An item is *new* when the previous version did not train on it, or trained on it under another label (a
corrected label is new knowledge). The replay sample is drawn from the *old* items, stratified by label: each
old label gives ``round(share × its count)`` items, at least ``min_per_label`` (never more than it has), so a
rare old scene is replayed too. The draw depends only on the seed and the items, not on their order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Share of the old gold labels replayed by default (benchmarks/incremental.py, docs/BENCHMARKS.md §14).
DEFAULT_REPLAY_SHARE = 0.2
DEFAULT_MIN_PER_LABEL = 1


@dataclass(frozen=True)
class IncrementalSelection:
    """Indices into the current gold items: what the run trains on, and a JSON-able report."""

    new: np.ndarray
    replay: np.ndarray
    report: dict[str, Any]

    @property
    def train(self) -> np.ndarray:
        return np.sort(np.concatenate([self.new, self.replay]))


def new_and_old(
    item_ids: Sequence[int], labels: Sequence[str], previous: Sequence[Sequence[Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the items new since ``previous`` (pairs [item_id, label_key] the previous version trained on)
    and of the old ones."""
    if len(item_ids) != len(labels):
        raise ValueError(f"{len(item_ids)} item ids but {len(labels)} labels")
    seen = {int(item_id): str(label) for item_id, label in previous}
    is_new = np.array([seen.get(int(i)) != str(label) for i, label in zip(item_ids, labels, strict=True)], dtype=bool)
    return np.flatnonzero(is_new), np.flatnonzero(~is_new)


def replay_sample(
    item_ids: Sequence[int],
    labels: Sequence[str],
    share: float,
    seed: int,
    min_per_label: int = DEFAULT_MIN_PER_LABEL,
) -> np.ndarray:
    """Indices of a label-stratified sample of the given (old) items, sorted; deterministic by seed."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"replay share must be between 0 and 1, not {share}")
    if share == 0.0 or not len(labels):
        return np.zeros(0, dtype=np.int64)
    ids = np.asarray(item_ids, dtype=np.int64)
    picked: list[np.ndarray] = []
    for offset, label in enumerate(sorted(set(labels))):
        rows = np.flatnonzero(np.asarray(labels) == label)
        rows = rows[np.argsort(ids[rows], kind="stable")]  # the draw must not depend on the query's order
        take = min(len(rows), max(min_per_label, round(share * len(rows))))
        rng = np.random.default_rng([seed, offset])
        picked.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def incremental_selection(
    item_ids: Sequence[int],
    labels: Sequence[str],
    previous: Sequence[Sequence[Any]],
    share: float = DEFAULT_REPLAY_SHARE,
    seed: int = 0,
    min_per_label: int = DEFAULT_MIN_PER_LABEL,
) -> IncrementalSelection:
    """New items plus a replay sample of the old ones, with a report of the counts per label."""
    new, old = new_and_old(item_ids, labels, previous)
    old_labels = [labels[i] for i in old]
    replay = old[replay_sample([item_ids[i] for i in old], old_labels, share, seed, min_per_label)]
    previous_labels = {str(label) for _, label in previous}
    report = {
        "replay_share": share,
        "min_per_label": min_per_label,
        "n_new": len(new),
        "n_old": len(old),
        "n_replay": len(replay),
        "new_per_label": dict(Counter(labels[i] for i in new)),
        "replay_per_label": dict(Counter(labels[i] for i in replay)),
        "labels_new_since_previous": sorted({labels[i] for i in new} - previous_labels),
    }
    return IncrementalSelection(new, replay, report)
