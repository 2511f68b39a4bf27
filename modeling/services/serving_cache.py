"""What the predict path reads per request about which version to serve, kept per process under the
"serving" change stamp (sceneclf_site/change_stamps.py): saving or deleting any row of the modeling app
(publish, rollback, archive, a new version) or a taxonomy version replaces the stamp, so every process sees
the change on its next request. SERVING_RECHECK_SECONDS bounds the reuse in any case (e.g. a change written
with a bulk UPDATE, which sends no signal)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from modeling.engine.backbones.recent import RecentFeatures
from sceneclf_site.change_stamps import StampedMemo, mark_changed

SERVING_STAMP = "serving"


def _recheck_seconds() -> float:
    return float(settings.SERVING_RECHECK_SECONDS)


published_ids: StampedMemo[int | None] = StampedMemo(SERVING_STAMP, _recheck_seconds)
latest_taxonomies: StampedMemo[Any] = StampedMemo(SERVING_STAMP, _recheck_seconds)
serving_aliases: StampedMemo[Any] = StampedMemo(SERVING_STAMP, _recheck_seconds)
cascade_settings: StampedMemo[Any] = StampedMemo(SERVING_STAMP, _recheck_seconds)
_recent_features: RecentFeatures | None = None


def recent_features() -> RecentFeatures | None:
    """The process's shared map of served feature vectors (modeling/engine/backbones/recent.py)."""
    global _recent_features
    capacity = int(settings.SERVING_RECENT_FEATURES)
    if capacity <= 0:
        return None
    if _recent_features is None or _recent_features.capacity != capacity:
        _recent_features = RecentFeatures(capacity)
    return _recent_features


def _serving_inputs_changed(sender: Any, **kwargs: Any) -> None:
    meta = getattr(sender, "_meta", None)
    if meta is None:
        return
    if meta.app_label == "modeling" or meta.label == "labeling.TaxonomyVersion":
        mark_changed(SERVING_STAMP)


def connect() -> None:
    post_save.connect(_serving_inputs_changed, dispatch_uid="serving-stamp-save")
    post_delete.connect(_serving_inputs_changed, dispatch_uid="serving-stamp-delete")


def forget() -> None:
    published_ids.clear()
    latest_taxonomies.clear()
    serving_aliases.clear()
    cascade_settings.clear()
    if _recent_features is not None:
        _recent_features.clear()
