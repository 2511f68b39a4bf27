"""Thin adapter between the Django side and the engine's backbones, extractor and feature cache.

Keeps settings (MODEL_ROOT, FEATURE_CACHE_DIR, TORCH_THREADS) out of the engine, and turns engine errors
about backbones into ServiceErrors a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import numpy as np
from django.conf import settings
from django.utils.translation import gettext

from sceneclf_site.api_errors import ServiceError

# Run params that configure feature extraction (the probe route's feature params).
FEATURE_PARAM_NAMES = ("pooling", "layer", "max_len", "max_len_cap", "batch_tokens", "dtype")


def resolve_backbone_spec(name: str | None) -> Any:
    from modeling.engine.backbones.specs import resolve_backbone

    backbone = name or settings.DEFAULT_BACKBONE
    try:
        return resolve_backbone(backbone, settings.MODEL_ROOT)
    except Exception as exc:  # the engine's message names what is missing and how to install it; keep it
        raise ServiceError(
            gettext("Backbone '%(backbone)s' is not usable: %(exc)s.") % {"backbone": backbone, "exc": exc},
            code="backbone_unavailable",
        ) from exc


def feature_config(spec: Any, params: dict[str, Any]) -> Any:
    """A FeatureConfig from the run params, using the backbone's defaults for pooling and layer."""
    from modeling.engine.backbones.features import FeatureConfig

    known = {f.name for f in fields(FeatureConfig)}
    values: dict[str, Any] = {
        "pooling": getattr(spec, "default_pooling", None) or "mean",
        "layer": getattr(spec, "default_layer", None) or "last",
    }
    if "threads" in known:
        values["threads"] = int(settings.TORCH_THREADS)
    values.update({k: params[k] for k in FEATURE_PARAM_NAMES if k in params and params[k] is not None})
    config = FeatureConfig(**{k: v for k, v in values.items() if k in known})
    if config.max_len is None:
        # Batches are padded per batch, so max_len only truncates; a fixed cap (rather than the P95 of today's
        # texts) keeps one cache key for training, extraction-only runs, scoring and label checks, so no text is
        # extracted twice.
        config = replace(config, max_len=int(config.max_len_cap))
    return config


def training_extractor(params: dict[str, Any], train_texts: list[str]) -> Any:
    """The extractor a probe training run with these params would use now (its max_len from the training
    texts), so a warm-up run fills the very cache entries training reads."""
    from modeling.engine.routes import parse_params
    from modeling.engine.routes.probe import build_extractor as probe_extractor

    probe_params = parse_params("probe", {k: v for k, v in params.items() if k in ("backbone", *FEATURE_PARAM_NAMES)})
    spec = resolve_backbone_spec(probe_params.backbone)
    return probe_extractor(probe_params, spec, train_texts, int(settings.TORCH_THREADS))


def build_extractor(spec: Any, config: Any) -> Any:
    from modeling.engine.backbones.features import FeatureExtractor

    return FeatureExtractor(spec, config)


def feature_cache() -> Any:
    from modeling.engine.backbones.cache import FeatureCache

    return FeatureCache(settings.FEATURE_CACHE_DIR)


def extract_with_cache(
    extractor: Any, texts: list[str], progress: Callable[..., Any] | None = None
) -> tuple[np.ndarray, int]:
    """Features for `texts` in input order, extracting only the ones the cache has not seen."""
    from modeling.engine.backbones.cache import cached_encode

    matrix, n_extracted = cached_encode(extractor, texts, None, feature_cache(), progress)
    return np.asarray(matrix, dtype=np.float32), int(n_extracted)
