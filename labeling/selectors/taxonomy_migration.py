"""Where each label of an older taxonomy version went in a newer one (for models trained on the older one).

Versions are matched by key, so a renamed key shows as one removed and one added label. A removed label is
taken as renamed when exactly one added label has its name, or exactly one added label has the same
non-empty example list; otherwise it is retired (deleted, split or merged: no single label replaces it)."""

from __future__ import annotations

from dataclasses import dataclass

from labeling.models import TaxonomyVersion
from labeling.selectors.taxonomy import diff_specs, version_specs
from labeling.taxonomy_io import LabelSpec

KEPT = "kept"
RENAMED = "renamed"
RETIRED = "retired"


@dataclass(frozen=True)
class LabelFate:
    status: str  # kept | renamed | retired
    key: str | None  # the key in the newer version (None when retired)


def _renamed_to(spec: LabelSpec, added: list[LabelSpec]) -> str | None:
    by_name = [a.key for a in added if a.name == spec.name]
    if len(by_name) == 1:
        return by_name[0]
    by_examples = [a.key for a in added if spec.examples and a.examples == spec.examples]
    return by_examples[0] if len(by_examples) == 1 else None


def label_migration(old: TaxonomyVersion, new: TaxonomyVersion) -> dict[str, LabelFate]:
    """Every label key of ``old`` with its fate in ``new``."""
    old_specs, new_specs = version_specs(old), version_specs(new)
    added, removed, _ = diff_specs(old_specs, new_specs)
    removed_keys = {spec.key for spec in removed}
    fates: dict[str, LabelFate] = {}
    claimed: set[str] = set()
    for spec in old_specs:
        if spec.key not in removed_keys:
            fates[spec.key] = LabelFate(KEPT, spec.key)
            continue
        target = _renamed_to(spec, [a for a in added if a.key not in claimed])
        if target is None:
            fates[spec.key] = LabelFate(RETIRED, None)
        else:
            claimed.add(target)
            fates[spec.key] = LabelFate(RENAMED, target)
    return fates
