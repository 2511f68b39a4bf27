"""Forgetting: how a new version does on the previous version's validation split, against the previous version.

Both versions answer the same texts; the figure is macro-F1 of their top label (before abstention, so a
change of threshold does not pass for forgetting), over the labels the split holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from modeling.engine.routes.base import Examples


def top_label_macro_f1(predictor: Any, examples: Examples) -> float:
    """Macro-F1 of ``predictor``'s top label over the labels ``examples`` hold."""
    probs = predictor.score(examples.texts).probs
    predicted = [predictor.label_keys[i] for i in np.argmax(probs, axis=1)]
    labels = sorted(set(examples.labels))
    return float(f1_score(examples.labels, predicted, labels=labels, average="macro", zero_division=0))


def forgetting_report(before: Any, after: Any, old_val: Examples) -> dict[str, Any]:
    """{"old_val_macro_f1_before", "old_val_macro_f1_after", "delta", "n"}: delta < 0 means the new version
    forgot part of what the previous one knew."""
    if not len(old_val):
        raise ValueError("the previous version's validation split is empty")
    old_val = known_to_both(old_val, before.label_keys, after.label_keys)
    f1_before = top_label_macro_f1(before, old_val)
    f1_after = top_label_macro_f1(after, old_val)
    return {
        "old_val_macro_f1_before": round(f1_before, 6),
        "old_val_macro_f1_after": round(f1_after, 6),
        "delta": round(f1_after - f1_before, 6),
        "n": len(old_val),
    }


def known_to_both(examples: Examples, keys_a: Sequence[str], keys_b: Sequence[str]) -> Examples:
    """The examples whose label both versions can answer."""
    known = set(keys_a) & set(keys_b)
    keep = [i for i, label in enumerate(examples.labels) if label in known]
    if not keep:
        raise ValueError("no item of the previous validation split has a label both versions know")
    return Examples([examples.texts[i] for i in keep], [examples.labels[i] for i in keep])
