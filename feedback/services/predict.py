"""The predict service: validate a request, answer it with the champion or (for its share of the traffic) the
challenger, log every prediction (masked text only) with the alias that answered, queue abstained texts for
review, and hand the request to the shadow, which scores it off the request path."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext

from feedback.models import PredictionLog
from feedback.services.log_writer import write_prediction_logs
from labeling.models import Project
from labeling.pii import mask_pii
from labeling.text import normalize_text
from modeling.models import Alias
from modeling.selectors.aliases import serving_aliases
from modeling.services import serving_cache
from modeling.services.cascade import CascadedPredictions, predict_through_cascade
from modeling.services.serving import LoadedModel, ServedPrediction
from modeling.services.traffic import serving_model_for
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

MAX_K = 20
MAX_SESSION_ID = 128
EXPLAIN_REASON = "reason"  # explain: "reason" adds a generated sentence for texts a decoder scored


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    single: bool  # the client sent "text" (one object back) rather than "texts" (a list back)
    k: int = 3
    session_id: str = ""
    explain: bool | str = False  # False, True or EXPLAIN_REASON


def parse_predict_request(data: Any) -> PredictRequest:
    """Checks shape and limits; the error names the field, the index and the limit."""
    if not isinstance(data, dict):
        raise ServiceError(gettext("The body must be a JSON object with 'text' or 'texts'."), code="invalid_body")
    has_text, has_texts = "text" in data, "texts" in data
    if has_text == has_texts:
        raise ServiceError(
            gettext("Send exactly one of 'text' (a string) or 'texts' (a list of strings)."), code="invalid_body"
        )
    max_texts, max_chars = int(settings.PREDICT_MAX_TEXTS), int(settings.PREDICT_MAX_CHARS)
    if has_text:
        texts = [data["text"]]
    else:
        texts = data["texts"]
        if not isinstance(texts, list):
            raise ServiceError(gettext("'texts' must be a list of strings."), code="invalid_texts")
        if not texts:
            raise ServiceError(gettext("'texts' is empty: send at least one text."), code="invalid_texts")
        if len(texts) > max_texts:
            raise ServiceError(
                gettext("Too many texts: %(n_texts)s sent, at most %(max_texts)s per request.")
                % {"n_texts": len(texts), "max_texts": max_texts},
                code="too_many_texts",
                details={"count": len(texts), "limit": max_texts},
            )
    for index, text in enumerate(texts):
        where = "'text'" if has_text else f"texts[{index}]"
        if not isinstance(text, str):
            raise ServiceError(
                gettext("%(where)s must be a string, got %(name)s.") % {"where": where, "name": type(text).__name__},
                code="invalid_text",
                details={"index": index},
            )
        if not text.strip():
            raise ServiceError(
                gettext("%(where)s is empty.") % {"where": where}, code="empty_text", details={"index": index}
            )
        if len(text) > max_chars:
            raise ServiceError(
                gettext("%(where)s has %(n_text)s characters; the limit is %(max_chars)s.")
                % {"where": where, "n_text": len(text), "max_chars": max_chars},
                code="text_too_long",
                details={"index": index, "length": len(text), "limit": max_chars},
            )
    k = data.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ServiceError(gettext("'k' must be an integer from 1 to %(max_k)s.") % {"max_k": MAX_K}, code="invalid_k")
    session_id = data.get("session_id", "") or ""
    if not isinstance(session_id, str) or len(session_id) > MAX_SESSION_ID:
        raise ServiceError(
            gettext("'session_id' must be a string of at most %(max_session_id)s characters.")
            % {"max_session_id": MAX_SESSION_ID},
            code="invalid_session_id",
        )
    explain = data.get("explain", False)
    if not isinstance(explain, bool) and explain != EXPLAIN_REASON:
        raise ServiceError(gettext("'explain' must be true, false or \"reason\"."), code="invalid_explain")
    return PredictRequest(texts=list(texts), single=has_text, k=k, session_id=session_id, explain=explain)


def predict_for_project(*, project: Project, request: PredictRequest, token: Any | None = None) -> dict[str, Any]:
    from feedback.services.shadow import score_in_shadow

    aliases = serving_cache.serving_aliases.get(project.pk, lambda: serving_aliases(project))
    role, model = serving_model_for(project, aliases, request.session_id)
    started = time.perf_counter()
    cascaded = predict_through_cascade(
        project=project, model=model, texts=request.texts, k=request.k, explain=request.explain
    )
    predictions = cascaded.predictions
    latency_ms = (time.perf_counter() - started) * 1000.0
    request_ids = [uuid.uuid4() for _ in request.texts]
    log_predictions(
        project, model, request, predictions, request_ids, latency_ms, token, role=role, stages=cascaded.stages
    )
    if aliases.shadow_id is not None:
        score_in_shadow(
            project=project, version_id=aliases.shadow_id, request=request, request_ids=request_ids, token=token
        )
    results = [
        _result(model, prediction, request_id, request.explain, cascaded, i)
        for i, (prediction, request_id) in enumerate(zip(predictions, request_ids, strict=True))
    ]
    if request.single:
        return results[0]
    return {"model_version": model.version_ref, "taxonomy_version": model.taxonomy_version, "results": results}


def _result(
    model: LoadedModel,
    p: ServedPrediction,
    request_id: uuid.UUID,
    explain: bool | str,
    cascaded: CascadedPredictions,
    index: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "label": p.label,
        "confidence": round(p.confidence, 6),
        "top_label": p.top_label,
        "top_confidence": round(p.top_confidence, 6),
        "topk": p.topk,
        "abstained": p.abstained,
        "abstain_reason": p.abstain_reason,
        "model_version": model.version_ref,
        "taxonomy_version": model.taxonomy_version,
        "request_id": str(request_id),
        "stage": cascaded.stage[index],
        "stages": cascaded.stages[index],
    }
    if explain:
        body["explain"] = {"neighbours": p.neighbours}
        if explain == EXPLAIN_REASON:
            body["explain"]["reason"] = cascaded.reasons[index]
    return body


def mask_and_hash(text: str) -> tuple[str, str]:
    """The masked, normalised text and its sha256, the same way labeling stores items."""
    masked = normalize_text(mask_pii(normalize_text(text)))
    return masked, hashlib.sha256(masked.encode("utf-8")).hexdigest()


def log_predictions(
    project: Project,
    model: LoadedModel,
    request: PredictRequest,
    predictions: list[ServedPrediction],
    request_ids: list[uuid.UUID],
    latency_ms: float,
    token: Any | None,
    *,
    role: str = Alias.CHAMPION,
    stages: list[list[dict[str, Any]]] | None = None,
) -> list[PredictionLog]:
    """One PredictionLog per text (latency = the whole call's model time), then the review queue."""
    rows = prediction_rows(
        project, model, request, predictions, request_ids, latency_ms, token, role=role, stages=stages
    )
    write_prediction_logs(rows)
    abstained = [(text, p) for text, p in zip(request.texts, predictions, strict=True) if p.abstained]
    if abstained:
        from feedback.services.review_queue import queue_abstained

        queue_abstained(project, model.version_ref, abstained)
    return rows


def prediction_rows(
    project: Project,
    model: LoadedModel,
    request: PredictRequest,
    predictions: list[ServedPrediction],
    request_ids: list[uuid.UUID],
    latency_ms: float,
    token: Any | None,
    *,
    role: str,
    stages: list[list[dict[str, Any]]] | None = None,
) -> list[PredictionLog]:
    from labeling.pii import protect_value

    # A client may use a phone number or an e-mail as its session id: stored masked or hashed, as ids are.
    session_id = protect_value(request.session_id, project.pii_field_mode)[:MAX_SESSION_ID]
    rows = []
    for i, (text, prediction, request_id) in enumerate(zip(request.texts, predictions, request_ids, strict=True)):
        masked, text_hash = mask_and_hash(text)
        rows.append(
            PredictionLog(
                project=project,
                model_version_id=model.version_id,
                request_id=request_id,
                session_id=session_id,
                token=token,
                text_masked=masked,
                text_hash=text_hash,
                label=prediction.label,
                confidence=prediction.confidence,
                abstained=prediction.abstained,
                topk=prediction.topk,
                latency_ms=round(latency_ms, 3),
                stages=stages[i] if stages else [],
                role=role,
            )
        )
    return rows
