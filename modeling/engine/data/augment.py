"""Perturbed copies of train items (the robustness perturbations), so a route learns to read past them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from modeling.engine.evaluation.robustness import PERTURBATIONS, perturb_one


@dataclass(frozen=True)
class Copy:
    source: int  # index of the train item it perturbs
    kind: str
    text: str


def augmented_copies(texts: Sequence[str], labels: Sequence[str], share: float, seed: int = 0) -> list[Copy]:
    """round(share * n) copies: items in a seeded order (again from the start once all are used),
    perturbations taken in turn so each kind gets an even share. A copy that came out unchanged is left out."""
    n_copies = round(share * len(texts))
    if n_copies <= 0 or not texts:
        return []
    rng = random.Random(f"augment:{seed}")
    order = rng.sample(range(len(texts)), len(texts))
    kinds = list(PERTURBATIONS)
    rng.shuffle(kinds)
    # Round k takes the items in the same order again and shifts each item's perturbation by k: kinds stay
    # evenly shared, and an item copied twice gets two different perturbations.
    first_slot = {source: slot for slot, source in enumerate(order)}
    copies = []
    for j in range(n_copies):
        round_, source = divmod(j, len(texts))
        source = order[source]
        kind = kinds[(first_slot[source] + round_) % len(kinds)]
        text = perturb_one(texts, labels, source, kind, seed + round_)
        if text != texts[source]:
            copies.append(Copy(source, kind, text))
    return copies


def copy_counts(copies: Sequence[Copy]) -> dict[str, int]:
    counts = Counter(c.kind for c in copies)
    return {kind: counts.get(kind, 0) for kind in PERTURBATIONS}
