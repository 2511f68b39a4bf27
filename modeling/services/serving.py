"""Serving the champion, challenger and shadow of a project.

Each process keeps the loaded models of each project in memory. Which versions hold the aliases is read from
the database when the "serving" change stamp changed (services/serving_cache.py; one cache read per request
otherwise), and a model is reloaded only when its id changed, so a promotion or a rollback in one process is
seen by every other process on its next request, without a restart. The backbone
itself stays loaded once per process (the engine's extractor caches it by path)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.translation import gettext

from labeling.models import Project
from labeling.selectors.training_data import latest_published_taxonomy
from modeling.models import ModelVersion
from modeling.selectors.model_health import LabelMapping, label_mapping
from modeling.services import serving_cache
from modeling.services.batching import batched_predict
from modeling.services.training import engine_load_context
from sceneclf_site.api_errors import ServiceError


class NoPublishedModelError(ServiceError):
    status_code = 503
    code = "no_published_model"


class ModelUnavailableError(ServiceError):
    status_code = 503
    code = "model_unavailable"


@dataclass
class LoadedModel:
    version_id: int
    version_ref: str
    route: str
    predictor: Any  # modeling.engine.versions.Predictor
    loaded_at: float = field(default_factory=time.time)
    taxonomy_version: int | None = None  # the taxonomy version number the model was trained on
    # How predicted labels map onto the latest published taxonomy, and that taxonomy's id.
    label_mapping: LabelMapping | None = None
    mapping_taxonomy_id: int | None = None


@dataclass(frozen=True)
class ServedPrediction:
    label: str
    confidence: float
    topk: list[dict[str, Any]]
    abstained: bool
    neighbours: list[dict[str, Any]]
    top_label: str = ""
    top_confidence: float = 0.0
    abstain_reason: str | None = None


_loaded: dict[int, LoadedModel] = {}  # project id -> its champion
_aliased: dict[tuple[int, str], LoadedModel] = {}  # (project id, "challenger" | "shadow") -> that version
_lock = threading.Lock()


def published_version_id(project: Project) -> int | None:
    from modeling.selectors.aliases import champion_version_id

    return serving_cache.published_ids.get(project.pk, lambda: champion_version_id(project))


def get_serving_model(project: Project) -> LoadedModel:
    """The champion of `project`, loaded once per process and reloaded when the champion changes."""
    version_id = published_version_id(project)
    if version_id is None:
        raise NoPublishedModelError(
            gettext("Project '%(slug)s' has no champion model yet: train one and make it champion on the model page.")
            % {"slug": project.slug},
        )
    return _cached(project, version_id, _loaded, project.id)


def get_aliased_model(project: Project, version_id: int, alias: str) -> LoadedModel:
    """The challenger or shadow `version_id` of `project`, cached like the champion."""
    return _cached(project, version_id, _aliased, (project.id, alias))


def _cached(project: Project, version_id: int, store: dict[Any, LoadedModel], key: Any) -> LoadedModel:
    current = store.get(key)
    if current is not None and current.version_id == version_id:
        _refresh_label_mapping(current, project)
        return current
    with _lock:
        current = store.get(key)
        if current is None or current.version_id != version_id:
            current = _already_loaded(version_id) or _load_or_raise(version_id)
            store[key] = current
    _refresh_label_mapping(current, project)
    return current


def _already_loaded(version_id: int) -> LoadedModel | None:
    """A challenger promoted to champion is served by the copy already in memory."""
    return next((m for m in [*_loaded.values(), *_aliased.values()] if m.version_id == version_id), None)


def _load_or_raise(version_id: int) -> LoadedModel:
    version = ModelVersion.objects.select_related("project", "taxonomy").get(pk=version_id)
    try:
        return load_version(version)
    except ServiceError as exc:
        raise ModelUnavailableError(
            gettext("The model %(ref)s cannot be served: %(message)s") % {"ref": version.ref, "message": exc.message}
        ) from exc
    except Exception as exc:  # e.g. ArtifactError: files changed on disk since it was made champion
        raise ModelUnavailableError(
            gettext("The model %(ref)s cannot be loaded (%(name)s: %(exc)s).")
            % {"ref": version.ref, "name": type(exc).__name__, "exc": exc}
        ) from exc


def _refresh_label_mapping(model: LoadedModel, project: Project) -> None:
    """A taxonomy published after the model's changes what its labels mean: recompute the mapping then."""
    latest = serving_cache.latest_taxonomies.get(project.pk, lambda: latest_published_taxonomy(project))
    latest_id = latest.pk if latest is not None else None
    if model.label_mapping is not None and model.mapping_taxonomy_id == latest_id:
        return
    version = ModelVersion.objects.select_related("taxonomy", "project").get(pk=model.version_id)
    model.label_mapping = label_mapping(version, latest)
    model.mapping_taxonomy_id = latest_id


@dataclass
class _Preload:
    state: str = "not_started"  # not_started | loading | ok | down
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


_preload = _Preload()


def preload_published_models() -> None:
    """Load the published model of every project, so no client waits for the first predict to load one."""
    from django.db import connection

    _preload.state = "loading"
    try:
        for project in Project.objects.filter(model_versions__status=ModelVersion.Status.PUBLISHED).distinct():
            try:
                _preload.loaded.append(get_serving_model(project).version_ref)
            except ServiceError as exc:
                _preload.failed[project.slug] = exc.message
    except Exception as exc:  # the web process keeps serving; health says why models were not loaded
        _preload.failed["*"] = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()  # this thread's own connection
    _preload.state = "down" if _preload.failed else "ok"


def start_preload() -> threading.Thread:
    """Start loading in the background (web processes only: workers load what their tasks need)."""
    _preload.state = "loading"
    thread = threading.Thread(target=preload_published_models, name="preload-models", daemon=True)
    thread.start()
    return thread


def preload_status() -> dict[str, Any]:
    """The `model` component of /api/v1/health."""
    if _preload.state == "not_started":
        return {"status": "ok", "detail": "models load on first use in this process"}
    body: dict[str, Any] = {"status": _preload.state, "loaded": list(_preload.loaded)}
    if _preload.failed:
        body["failed"] = dict(_preload.failed)
    return body


def forget_loaded_models() -> None:
    """Drops every loaded model of this process (tests; memory pressure)."""
    with _lock:
        _loaded.clear()
        _aliased.clear()
    serving_cache.forget()


def load_predictor(version: ModelVersion, *, cached: bool = False, threads: int | None = None) -> Any:
    """The engine's Predictor of a version, its files verified against the manifest recorded at training.
    ``cached`` reads and fills the feature cache (scoring stored items); serving computes request features
    without storing them."""
    from modeling.engine.routes.probe import BackboneMismatch
    from modeling.engine.versions import Predictor

    try:
        return Predictor.load(
            Path(version.artifacts_dir),
            engine_load_context(cached=cached, threads=threads),
            expected_manifest=version.manifest or None,
        )
    except BackboneMismatch as exc:
        raise ServiceError(
            gettext(
                "The installed backbone '%(name)s' (fingerprint %(value)s) is not the one %(ref)s was trained on "
                "(%(value2)s); reinstall it or retrain."
            )
            % {"name": exc.name, "value": exc.installed[:12], "ref": version.ref, "value2": exc.trained[:12]},
            code="backbone_mismatch",
        ) from exc


def load_version(version: ModelVersion) -> LoadedModel:
    return LoadedModel(
        version_id=version.id,
        version_ref=version.ref,
        route=version.route,
        predictor=load_predictor(version, threads=serving_threads()),
        taxonomy_version=version.taxonomy.number,
    )


def serving_threads() -> int:
    """Torch threads per predict call. One by default: a short text is too small a matmul to split, and on a
    busy CPU extra threads spin and wait (measured: p50 23 ms with 1 thread vs 459 ms with 2 under load).
    Scale with more web workers instead; PREDICT_TORCH_THREADS overrides."""
    return max(1, int(settings.PREDICT_TORCH_THREADS))


def predict_with(model: LoadedModel, texts: list[str], *, k: int = 3, explain: bool = False) -> list[ServedPrediction]:
    """Abstained texts always carry their nearest labelled examples: reviewers see them in the review queue."""
    predictions = batched_predict(model.predictor, texts, k=k, explain=explain)
    return [_served(model, p) for p in predictions]


def _served(model: LoadedModel, p: Any) -> ServedPrediction:
    """The engine's prediction, with labels the latest taxonomy renamed or retired mapped as it says."""
    from modeling.engine.evaluation.calibration import LABEL_RETIRED

    label, confidence, abstained, reason = p.label, float(p.confidence), bool(p.abstained), p.abstain_reason
    mapping = model.label_mapping
    if mapping is not None and mapping.fates:
        fallback = mapping.fallback_key or model.predictor.fallback_key
        renamed, retired = mapping.renamed(), set(mapping.retired())
        if abstained:
            label = renamed.get(label, fallback)
        elif label in retired:
            label, abstained, reason = fallback, True, LABEL_RETIRED
            confidence = float(p.fallback_confidence)
        else:
            label = renamed.get(label, label)
    return ServedPrediction(
        label=label,
        confidence=confidence,
        topk=[{"label": key, "probability": round(float(prob), 6)} for key, prob in p.topk],
        abstained=abstained,
        neighbours=list(p.neighbours),
        top_label=p.top_label,
        top_confidence=float(p.top_confidence),
        abstain_reason=reason,
    )
