"""Items like this one: the nearest items by cosine similarity of the cached frozen features.

The features are those of the published version's backbone and feature settings, in the precision it was
trained in (where it serves in INT8, that namespace's vectors fill the gaps); without a published probe model,
those of the default backbone as extraction runs and label checks cache them. Only items whose features are in
the cache take part: nothing is extracted here except, when it is missing, the one item asked about (and that
vector is not stored)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from django.conf import settings

from labeling.models import Item, Project
from modeling.engine.files import text_sha256
from modeling.services import features as feature_services
from modeling.services.serving import get_serving_model
from sceneclf_site.api_errors import ServiceError

_extractor_lock = threading.Lock()


@dataclass(frozen=True)
class SimilarItem:
    item: Item
    similarity: float


@dataclass(frozen=True)
class Neighbourhood:
    items: list[SimilarItem]
    searched: int  # items whose cached features were compared
    total: int  # items in the project
    source: str  # the model ref or backbone the features come from


@lru_cache(maxsize=4)
def _cache_for(root: str) -> Any:
    # One cache object per process keeps the loaded shards in memory: only new shards are read later.
    from modeling.engine.backbones.cache import FeatureCache

    return FeatureCache(root)


@lru_cache(maxsize=2)
def _default_extractor(backbone: str) -> Any:
    spec = feature_services.resolve_backbone_spec(backbone)
    return feature_services.build_extractor(spec, feature_services.feature_config(spec, {}))


def _extractors(project: Project) -> tuple[list[Any], str]:
    """The extractors whose cached features are searched, first choice first, and where they come from."""
    try:
        model = get_serving_model(project)
    except ServiceError:  # none published, or it cannot be loaded: the default backbone's features
        model = None
    # Routes on frozen features (probe) keep their extractor in a feature source; the cache is keyed by it.
    trained = getattr(model.predictor.trained, "source", None) if model is not None else None
    if trained is not None:
        # Training cached the gold items in the trained precision; a version served in INT8 has its
        # validation and test items in the INT8 namespace too, which passed the quality gate against it.
        served = getattr(model.predictor.fitted, "source", None)
        extractors = [trained.extractor]
        if served is not None and served.extractor.cache_key() != trained.extractor.cache_key():
            extractors.append(served.extractor)
        return extractors, model.version_ref
    with _extractor_lock:
        return [_default_extractor(settings.DEFAULT_BACKBONE)], str(settings.DEFAULT_BACKBONE)


def similar_items(project: Project, item: Item, *, k: int = 10) -> Neighbourhood:
    """The k items most similar to `item` (itself excluded), best first."""
    extractors, source = _extractors(project)
    rows = list(Item.objects.filter(project=project).exclude(pk=item.pk).values_list("id", "text"))
    cache = _cache_for(str(settings.FEATURE_CACHE_DIR))
    hashes = [text_sha256(text) for _, text in rows]
    own_hash = text_sha256(item.text)
    found: dict[str, np.ndarray] = {}
    for extractor in reversed(extractors):  # the first choice's vectors win
        found.update(cache.get(extractor.cache_key(), [*hashes, own_hash]))
    query = found.get(own_hash)
    if query is None:
        query = extractors[0].encode([item.text])[0]
    ids = [item_id for (item_id, _), h in zip(rows, hashes, strict=True) if h in found]
    if not ids:
        return Neighbourhood([], 0, len(rows) + 1, source)
    matrix = np.stack([found[h] for h in hashes if h in found])
    scores = _cosine(matrix, np.asarray(query, dtype=np.float32))
    best = np.argsort(-scores, kind="stable")[:k]
    by_id = Item.objects.select_related("gold").in_bulk([ids[i] for i in best])
    chosen = [SimilarItem(by_id[ids[i]], round(float(scores[i]), 4)) for i in best]
    return Neighbourhood(chosen, len(ids), len(rows) + 1, source)


def _cosine(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
    return (matrix @ vector) / np.maximum(norms, 1e-12)
