"""The cascade at predict time: a project's settings, and predicting through them.

The published version answers every text; a text whose calibrated top probability is under the project's
``tau_recheck`` is re-scored by the re-check version (a decoder route) while this process's share cap allows,
and the answer comes from the combined distribution under the published version's abstention rule
(``modeling.engine.cascade``). The re-check version is loaded once per process, like the published one. A
re-check version that cannot be loaded never fails a request: the published version's answer stands."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from labeling.models import Project
from modeling.models import CascadeSettings, ModelVersion
from modeling.services import serving_cache
from modeling.services.serving import LoadedModel, ServedPrediction, _served, load_version, predict_with
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

RECHECK_ROUTES = ("lora", "prefix", "zero_shot")
DECODER_ROUTES = RECHECK_ROUTES  # the routes whose fitted model can write a reason
MAX_WINDOW_SECONDS = 3600
PRIMARY, RECHECK = "primary", "recheck"


def cascade_settings_for(project: Project) -> CascadeSettings:
    settings, _ = CascadeSettings.objects.select_related("recheck_version").get_or_create(project=project)
    return settings


def cascade_settings_values(project: Project) -> dict[str, Any]:
    """The settings as plain values (the re-check version by its number), as the API shows and takes them."""
    settings = cascade_settings_for(project)
    version = settings.recheck_version
    return {
        "enabled": settings.enabled,
        "recheck_version": version.number if version is not None else None,
        "tau_recheck": settings.tau_recheck,
        "max_share": settings.max_share,
        "window_seconds": settings.window_seconds,
        "combine_rule": settings.combine_rule,
        "updated_at": settings.updated_at,
    }


def update_cascade_settings(
    *,
    project: Project,
    enabled: bool,
    recheck_version_number: int | None,
    tau_recheck: float,
    max_share: float,
    window_seconds: int,
    combine_rule: str,
    user: Any | None = None,
) -> CascadeSettings:
    """Validates every value and the re-check version, then saves them together."""
    _check_numbers(tau_recheck, max_share, window_seconds)
    if combine_rule not in CascadeSettings.Combine.values:
        raise ServiceError(
            gettext("Unknown combine rule '%(rule)s'; choose one of %(rules)s.")
            % {"rule": combine_rule, "rules": ", ".join(CascadeSettings.Combine.values)},
            code="invalid_cascade",
        )
    with transaction.atomic():
        settings = cascade_settings_for(project)
        settings = CascadeSettings.objects.select_for_update().get(pk=settings.pk)
        version = None if recheck_version_number is None else _recheck_version(project, recheck_version_number)
        if enabled and version is None:
            raise ServiceError(
                gettext("Choose the re-check version before turning the cascade on."), code="invalid_cascade"
            )
        settings.enabled = bool(enabled)
        settings.recheck_version = version
        settings.tau_recheck = float(tau_recheck)
        settings.max_share = float(max_share)
        settings.window_seconds = int(window_seconds)
        settings.combine_rule = combine_rule
        settings.updated_by = user if getattr(user, "is_authenticated", False) else None
        settings.save()
    return settings


def _check_numbers(tau_recheck: Any, max_share: Any, window_seconds: Any) -> None:
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if not number(tau_recheck) or not 0.0 < float(tau_recheck) <= 1.0:
        raise ServiceError(gettext("tau_recheck must be a number above 0 and at most 1."), code="invalid_cascade")
    if not number(max_share) or not 0.0 <= float(max_share) <= 1.0:
        raise ServiceError(gettext("max_share must be a number between 0 and 1."), code="invalid_cascade")
    if not number(window_seconds) or int(window_seconds) != window_seconds or not 1 <= window_seconds <= 3600:
        raise ServiceError(
            gettext("window_seconds must be a whole number from 1 to %(max)s.") % {"max": MAX_WINDOW_SECONDS},
            code="invalid_cascade",
        )


def _recheck_version(project: Project, number: int) -> ModelVersion:
    """The project's version ``number``, if it can re-check the published version's answers."""
    from modeling.engine.artifacts import ArtifactError, verify_artifacts
    from modeling.engine.cascade import compatible

    version = ModelVersion.objects.filter(project=project, number=number).first()
    if version is None:
        raise ServiceError(
            gettext("Model v%(number)s does not exist in this project.") % {"number": number},
            code="invalid_cascade",
        )
    if version.route not in RECHECK_ROUTES:
        raise ServiceError(
            gettext("Model v%(number)s is a '%(route)s' version; the re-check must be one of %(routes)s.")
            % {"number": number, "route": version.route, "routes": ", ".join(RECHECK_ROUTES)},
            code="invalid_cascade",
        )
    try:
        verify_artifacts(Path(version.artifacts_dir), version.manifest or None)
    except (ArtifactError, OSError) as exc:
        raise ServiceError(
            gettext("Model v%(number)s cannot re-check: its files do not verify (%(exc)s).")
            % {"number": number, "exc": exc},
            code="invalid_cascade",
        ) from exc
    published = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.PUBLISHED).first()
    if published is not None and published.pk == version.pk:
        raise ServiceError(
            gettext("Model v%(number)s is the published version; the re-check must be another one.")
            % {"number": number},
            code="invalid_cascade",
        )
    unknown = compatible(published.label_keys, version.label_keys) if published is not None else []
    if unknown:
        raise ServiceError(
            gettext("Model v%(number)s knows labels the published version does not (%(labels)s): retrain it.")
            % {"number": number, "labels": ", ".join(unknown[:10])},
            code="invalid_cascade",
        )
    return version


@dataclass
class CascadedPredictions:
    predictions: list[ServedPrediction]
    stage: list[str]  # per text: "recheck" when the re-check version scored it, else "primary"
    stages: list[list[dict[str, Any]]]  # per text, each stage's model version, label, confidence and ms
    reasons: list[str | None]  # with explain "reason": a sentence from the decoder that scored the text


def predict_through_cascade(
    *, project: Project, model: LoadedModel, texts: list[str], k: int = 3, explain: bool | str = False
) -> CascadedPredictions:
    """The published version's answers, re-checked where the project's cascade says so."""
    settings = _active_settings(project, model)
    recheck = _recheck_model(settings) if settings is not None else None
    if settings is None or recheck is None:
        result = _primary_only(model, texts, k, bool(explain))
    else:
        result = _cascaded(settings, model, recheck, texts, k, bool(explain))
    result.reasons = _reasons(model, recheck, texts, result) if explain == "reason" else [None] * len(texts)
    return result


def _active_settings(project: Project, model: LoadedModel) -> CascadeSettings | None:
    settings = serving_cache.cascade_settings.get(project.pk, lambda: _enabled_settings(project))
    if settings is None or settings.recheck_version_id == model.version_id:
        return None
    return settings


def _enabled_settings(project: Project) -> CascadeSettings | None:
    """Read per request through the serving memo: a change of the settings (a modeling row) replaces the stamp."""
    return (
        CascadeSettings.objects.select_related("recheck_version")
        .filter(project=project, enabled=True, recheck_version__isnull=False)
        .first()
    )


def _primary_only(model: LoadedModel, texts: list[str], k: int, explain: bool) -> CascadedPredictions:
    started = time.perf_counter()
    predictions = predict_with(model, texts, k=k, explain=explain)
    ms = (time.perf_counter() - started) * 1000.0 / max(1, len(texts))
    stages = [[_stage(PRIMARY, model, p.top_label, p.top_confidence, ms)] for p in predictions]
    return CascadedPredictions(predictions, [PRIMARY] * len(texts), stages, [])


def _cascaded(
    settings: CascadeSettings, model: LoadedModel, recheck: LoadedModel, texts: list[str], k: int, explain: bool
) -> CascadedPredictions:
    from modeling.engine.cascade import run_cascade

    cap = _cap_for(settings)
    result = run_cascade(
        model.predictor,
        recheck.predictor,
        texts,
        tau=settings.tau_recheck,
        rule=settings.combine_rule,
        admit=cap.admit,
        k=k,
        explain=explain,
    )
    primary_ms = result.primary_seconds * 1000.0 / max(1, len(texts))
    recheck_ms = result.recheck_seconds * 1000.0 / max(1, sum(result.rechecked))
    stages = []
    for first, second in zip(result.primary, result.recheck, strict=True):
        row = [_stage(PRIMARY, model, first.label, first.confidence, primary_ms)]
        if second is not None:
            row.append(_stage(RECHECK, recheck, second.label, second.confidence, recheck_ms))
        stages.append(row)
    predictions = [_served(model, p) for p in result.predictions]
    stage = [RECHECK if checked else PRIMARY for checked in result.rechecked]
    return CascadedPredictions(predictions, stage, stages, [])


def _stage(name: str, model: LoadedModel, label: str, confidence: float, ms: float) -> dict[str, Any]:
    return {
        "stage": name,
        "model_version": model.version_ref,
        "label": label,
        "confidence": round(float(confidence), 6),
        "ms": round(ms, 3),
    }


def _reasons(
    model: LoadedModel, recheck: LoadedModel | None, texts: list[str], result: CascadedPredictions
) -> list[str | None]:
    """One sentence per text a decoder scored: the re-check version's for re-checked texts, the published
    version's when it is a decoder route itself; None for the others."""
    reasons: list[str | None] = []
    for text, prediction, stage in zip(texts, result.predictions, result.stage, strict=True):
        scorer = recheck if stage == RECHECK else model
        fitted = scorer.predictor.fitted if scorer is not None and scorer.route in DECODER_ROUTES else None
        reasons.append(fitted.reason(text, prediction.top_label) if fitted is not None else None)
    return reasons


_recheck_loaded: dict[int, LoadedModel] = {}  # by project id
_caps: dict[int, tuple[tuple[float, int], Any]] = {}  # by project id
_lock = threading.Lock()


def _recheck_model(settings: CascadeSettings) -> LoadedModel | None:
    """The project's re-check version, loaded once per process; None (and a log line) when it cannot be."""
    version = settings.recheck_version
    current = _recheck_loaded.get(settings.project_id)
    if current is not None and current.version_id == version.pk:
        return current
    with _lock:
        current = _recheck_loaded.get(settings.project_id)
        if current is None or current.version_id != version.pk:
            try:
                current = load_version(version)
            except Exception as exc:  # e.g. files changed on disk: the published version answers alone
                logger.warning("re-check version %s cannot be loaded: %s: %s", version.ref, type(exc).__name__, exc)
                return None
            _recheck_loaded[settings.project_id] = current
    return current


def _cap_for(settings: CascadeSettings) -> Any:
    """This process's share cap of the project, rebuilt when the owner changes the share or the window."""
    from modeling.engine.cascade import ShareCap

    key = (float(settings.max_share), int(settings.window_seconds))
    with _lock:
        known = _caps.get(settings.project_id)
        if known is None or known[0] != key:
            known = (key, ShareCap(*key))
            _caps[settings.project_id] = known
    return known[1]


def forget_cascade_state() -> None:
    """Drops this process's loaded re-check versions, share caps and cached settings (tests)."""
    with _lock:
        _recheck_loaded.clear()
        _caps.clear()
    serving_cache.cascade_settings.clear()
