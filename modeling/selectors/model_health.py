"""What an owner must know about a model version before trusting it: its abstention rule did not reach the
target, it abstains on most texts, or the taxonomy changed since it was trained (a retrain is due)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext

from labeling.models import TaxonomyVersion
from labeling.selectors.taxonomy_migration import RENAMED, RETIRED, LabelFate, label_migration
from labeling.selectors.training_data import latest_published_taxonomy, taxonomy_label_keys

# Below this validation coverage the model answers too little to be useful; the page says so.
LOW_COVERAGE = 0.5


@dataclass(frozen=True)
class LabelMapping:
    """How the labels a model predicts map onto the latest published taxonomy."""

    trained_on: int  # taxonomy version number the model was trained on
    latest: int | None
    fallback_key: str  # the latest taxonomy's fallback
    fates: dict[str, LabelFate] = field(default_factory=dict)  # model label key -> fate; only changed ones

    @property
    def retrain_due(self) -> bool:
        return bool(self.fates)

    def renamed(self) -> dict[str, str]:
        return {key: fate.key for key, fate in self.fates.items() if fate.status == RENAMED and fate.key}

    def retired(self) -> list[str]:
        return sorted(key for key, fate in self.fates.items() if fate.status == RETIRED)


def label_mapping(version: Any, latest: TaxonomyVersion | None = None) -> LabelMapping:
    """The mapping of ``version``'s labels onto the latest published taxonomy of its project."""
    trained_on = version.taxonomy
    latest = latest or latest_published_taxonomy(version.project)
    if latest is None or latest.pk == trained_on.pk:
        _, fallback = taxonomy_label_keys(trained_on)
        return LabelMapping(trained_on.number, trained_on.number, fallback or "")
    _, fallback = taxonomy_label_keys(latest)
    migration = label_migration(trained_on, latest)
    changed = {key: fate for key, fate in migration.items() if key in set(version.label_keys) and fate.status != "kept"}
    return LabelMapping(trained_on.number, latest.number, fallback or "", changed)


def version_warnings(version: Any) -> list[str]:
    """Plain-words warnings for the model page."""
    metrics = version.metrics or {}
    warnings = []
    if metrics.get("abstention_warning"):
        warnings.append(metrics["abstention_warning"])
    coverage = ((metrics.get("val") or {}).get("abstention") or {}).get("coverage")
    if coverage is not None and coverage < LOW_COVERAGE:
        warnings.append(
            gettext(
                "This model answers only %(coverage)s of validation texts and abstains (sends to the fallback "
                "label) on the rest. Lower the abstention target, set a coverage floor, or label more and cleaner "
                "data."
            )
            % {"coverage": f"{coverage:.0%}"}
        )
    mapping = label_mapping(version)
    if mapping.retrain_due:
        parts = [f"{old} → {new}" for old, new in sorted(mapping.renamed().items())]
        parts += [
            gettext("%(key)s (removed: predictions abstain with reason label_retired)") % {"key": key}
            for key in mapping.retired()
        ]
        warnings.append(
            gettext(
                "Retrain due: this model was trained on taxonomy v%(trained_on)s, and v%(latest)s changed labels "
                "it predicts: %(changes)s."
            )
            % {"trained_on": mapping.trained_on, "latest": mapping.latest, "changes": gettext("; ").join(parts)}
        )
    return warnings
