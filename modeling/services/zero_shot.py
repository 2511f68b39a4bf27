"""The zero-shot model of a project's published taxonomy: built once per taxonomy version, reused after.

Before a project has its first trained version, active learning's cold start and the workspace's suggestions
come from the `zero_shot` route, which needs only the taxonomy's names, definitions and examples.

The model is a version folder like any other (`TrainedVersion.save`: temporary folder, sha256 manifest,
rename), kept under ``ARTIFACT_ROOT/project-<id>/zero-shot/`` and named by the taxonomy version and a hash of
the parameters. A published taxonomy version never changes, so the folder stays valid until a newer version
is published: the next cold start then builds the new one and removes the older folders. A folder whose
files do not verify against its manifest is rebuilt, never used. No table row: the folder is derived data
that the taxonomy rebuilds, and nothing serves it to predict clients.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from labeling.models import Project, TaxonomyVersion
from labeling.models.workspace import ZERO_SHOT_REF_PREFIX
from labeling.selectors.training_data import latest_published_taxonomy, taxonomy_label_keys
from modeling.services.training import engine_load_context, engine_taxonomy

logger = logging.getLogger(__name__)

ZERO_SHOT_DIR = "zero-shot"


@dataclass(frozen=True)
class ZeroShotScores:
    ref: str  # e.g. "zero-shot:t3" (taxonomy version 3)
    label_keys: list[str]
    probs: np.ndarray  # (n, n_labels), the route's softmax (uncalibrated: no gold labels yet)
    features: np.ndarray | None  # (n, d) the encoder's text embeddings, for spreading the batch


def zero_shot_params() -> dict[str, Any]:
    """The route parameters of the cold-start model: the app's encoder and decoder packs, the method setting."""
    return {
        "method": settings.ZERO_SHOT_METHOD,
        "encoder": settings.DEFAULT_BACKBONE,
        "decoder": settings.ZERO_SHOT_DECODER,
    }


def model_folder(project: Project, taxonomy: TaxonomyVersion, params: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return Path(settings.ARTIFACT_ROOT) / f"project-{project.pk}" / ZERO_SHOT_DIR / f"t{taxonomy.pk}-{digest}"


def zero_shot_ref(taxonomy: TaxonomyVersion) -> str:
    return f"{ZERO_SHOT_REF_PREFIX}:t{taxonomy.number}"


def zero_shot_predictor(project: Project) -> tuple[Any, TaxonomyVersion] | None:
    """The zero-shot Predictor of the project's latest published taxonomy (built on first use), or None
    without a published taxonomy."""
    taxonomy = latest_published_taxonomy(project)
    if taxonomy is None:
        return None
    params = zero_shot_params()
    folder = model_folder(project, taxonomy, params)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock", "a") as lock:
        # Two cold starts of one project (beat and a manual re-score) build the model once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        predictor = _load_verified(folder)
        if predictor is None:
            _build(taxonomy, params, folder)
            predictor = _load_verified(folder)
        _remove_other_models(folder)
    return predictor, taxonomy


def score_texts(project: Project, texts: list[str]) -> ZeroShotScores | None:
    loaded = zero_shot_predictor(project)
    if loaded is None:
        return None
    predictor, taxonomy = loaded
    scored = predictor.score(texts)
    return ZeroShotScores(
        zero_shot_ref(taxonomy),
        list(predictor.label_keys),
        np.asarray(scored.probs, dtype=np.float64),
        scored.features,
    )


def _load_verified(folder: Path) -> Any | None:
    from modeling.engine.artifacts import ArtifactError
    from modeling.engine.versions import Predictor

    if not folder.exists():
        return None
    try:
        return Predictor.load(folder, engine_load_context(cached=True))
    except ArtifactError as exc:
        logger.warning("zero-shot model %s does not verify (%s); rebuilding it", folder.name, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _build(taxonomy: TaxonomyVersion, params: dict[str, Any], folder: Path) -> None:
    from modeling.engine.routes.base import Examples, FitContext
    from modeling.engine.versions import train_version

    keys, fallback = taxonomy_label_keys(taxonomy)
    ctx = FitContext(
        label_keys=keys,
        taxonomy=engine_taxonomy(taxonomy, fallback),
        model_root=Path(settings.MODEL_ROOT),
        cache_dir=Path(settings.FEATURE_CACHE_DIR),
        threads=int(settings.TORCH_THREADS),
    )
    nothing = Examples([], [])
    version = train_version("zero_shot", params, nothing, nothing, ctx)
    version.save(folder)
    logger.info("built the zero-shot model of taxonomy %s (%d labels)", taxonomy.pk, len(keys))


def _remove_other_models(keep: Path) -> None:
    """Models of older taxonomy versions (or other parameters) are not used again."""
    for path in keep.parent.iterdir():
        if path.is_dir() and path != keep:
            shutil.rmtree(path, ignore_errors=True)
