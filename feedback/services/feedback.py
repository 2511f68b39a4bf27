"""Feedback from downstream apps on served predictions: corrections, business outcomes and comments.

Each item is checked and stored on its own (a batch with one bad item keeps the good ones) and answered with a
status. A correction is never gold by itself: it opens a review task ranked by risk, and the reviewer's
decision becomes gold with method `feedback` (labeling.services.review)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from feedback.models import PredictionFeedback, PredictionLog
from feedback.services.log_writer import find_prediction_log
from labeling.models import Project, ReviewTask
from labeling.pii import mask_pii, protect_value
from labeling.text import normalize_text
from sceneclf_site.api_errors import ServiceError

FEEDBACK_SOURCE = "feedback"
ITEM_FIELDS = ("request_id", "correct_label", "outcome", "comment")
OUTCOME_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_OUTCOME_VALUE = 200
MAX_COMMENT = 2000


class Status:
    STORED = "stored"
    DUPLICATE = "duplicate"  # the same item for the same request was stored before: nothing changed
    UNKNOWN_REQUEST = "unknown_request_id"
    OTHER_PROJECT = "other_project"  # the request id belongs to a prediction of another project
    UNKNOWN_LABEL = "unknown_label"
    INVALID = "invalid"


ACCEPTED = {Status.STORED, Status.DUPLICATE}


@dataclass(frozen=True)
class FeedbackResult:
    index: int
    request_id: str | None
    status: str
    message: str = ""
    feedback_id: int | None = None
    review_task_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeedbackItem:
    request_id: uuid.UUID
    correct_label: str
    outcome: str
    outcome_value: str
    comment: str


class ItemProblem(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_feedback_body(data: Any) -> tuple[list[Any], bool]:
    """The items of a body (one object, a list, or {"items": [...]}) and whether it was a single object."""
    if isinstance(data, dict) and "items" in data:
        data = data["items"]
        if not isinstance(data, list):
            raise ServiceError(gettext("'items' must be a list of feedback objects."), code="invalid_body")
    elif isinstance(data, dict):
        return [data], True
    if not isinstance(data, list):
        raise ServiceError(
            gettext("The body must be a feedback object, a list of them, or {'items': [...]}."), code="invalid_body"
        )
    if not data:
        raise ServiceError(gettext("The list is empty: send at least one feedback item."), code="invalid_body")
    limit = int(settings.FEEDBACK_MAX_ITEMS)
    if len(data) > limit:
        raise ServiceError(
            gettext("Too many feedback items: %(count)s sent, at most %(limit)s per request.")
            % {"count": len(data), "limit": limit},
            code="too_many_items",
            details={"count": len(data), "limit": limit},
        )
    return data, False


def submit_feedback(*, project: Project, items: list[Any], token: Any | None = None) -> list[FeedbackResult]:
    """One result per item, in order. Every item runs in its own transaction. The release rule looks at the
    new labels once they are committed."""
    from feedback.services.release import queue_release_check

    results = [_submit_one(project, index, raw, token) for index, raw in enumerate(items)]
    if any(result.status == Status.STORED for result in results):
        queue_release_check(project)
    return results


def _submit_one(project: Project, index: int, raw: Any, token: Any | None) -> FeedbackResult:
    request_id = raw.get("request_id") if isinstance(raw, dict) else None
    shown_id = request_id if isinstance(request_id, str) else None
    try:
        item = _parse_item(raw, project)
        with transaction.atomic():
            return _store(project, index, item, token)
    except ItemProblem as problem:
        return FeedbackResult(index=index, request_id=shown_id, status=problem.status, message=problem.message)


def _parse_item(raw: Any, project: Project) -> FeedbackItem:
    if not isinstance(raw, dict):
        raise ItemProblem(Status.INVALID, gettext("Each feedback item must be a JSON object."))
    unknown = sorted(set(raw) - set(ITEM_FIELDS))
    if unknown:
        raise ItemProblem(
            Status.INVALID,
            gettext("Unknown field(s) %(fields)s; use %(allowed)s.")
            % {"fields": ", ".join(unknown), "allowed": ", ".join(ITEM_FIELDS)},
        )
    try:
        request_id = uuid.UUID(str(raw.get("request_id", "")))
    except ValueError:
        raise ItemProblem(
            Status.INVALID, gettext("'request_id' must be the request_id of a predict response.")
        ) from None
    correct_label = _optional_string(raw, "correct_label", 64)
    outcome, outcome_value = _outcome(raw.get("outcome"))
    comment = _optional_string(raw, "comment", MAX_COMMENT)
    if not (correct_label or outcome or comment):
        raise ItemProblem(Status.INVALID, gettext("Send at least one of 'correct_label', 'outcome' or 'comment'."))
    mode = project.pii_field_mode
    return FeedbackItem(
        request_id=request_id,
        correct_label=correct_label,
        outcome=protect_value(outcome, mode)[:64] if outcome else "",
        outcome_value=protect_value(outcome_value, mode)[:MAX_OUTCOME_VALUE] if outcome_value else "",
        comment=normalize_text(mask_pii(normalize_text(comment))) if comment else "",
    )


def _optional_string(raw: dict[str, Any], name: str, limit: int) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ItemProblem(Status.INVALID, gettext("'%(name)s' must be a string.") % {"name": name})
    value = value.strip()
    if len(value) > limit:
        raise ItemProblem(
            Status.INVALID,
            gettext("'%(name)s' has %(length)s characters; the limit is %(limit)s.")
            % {"name": name, "length": len(value), "limit": limit},
        )
    return value


def _outcome(value: Any) -> tuple[str, str]:
    """`"rerouted"` or `{"key": "rerouted", "value": "物流"}`."""
    if value is None:
        return "", ""
    if isinstance(value, str):
        key, detail = value, None
    elif isinstance(value, dict) and set(value) <= {"key", "value"}:
        key, detail = value.get("key"), value.get("value")
    else:
        raise ItemProblem(Status.INVALID, gettext("'outcome' must be a key string or {'key': ..., 'value': ...}."))
    if not isinstance(key, str) or not OUTCOME_KEY.match(key):
        raise ItemProblem(
            Status.INVALID,
            gettext("The outcome key must be 1-64 letters, digits or _ . : - (for example 'rerouted')."),
        )
    if isinstance(detail, bool) or (detail is not None and not isinstance(detail, str | int | float)):
        raise ItemProblem(Status.INVALID, gettext("The outcome value must be a string or a number."))
    detail_text = "" if detail is None else str(detail).strip()
    if len(detail_text) > MAX_OUTCOME_VALUE:
        raise ItemProblem(
            Status.INVALID,
            gettext("The outcome value is longer than %(limit)s characters.") % {"limit": MAX_OUTCOME_VALUE},
        )
    return key, detail_text


def _store(project: Project, index: int, item: FeedbackItem, token: Any | None) -> FeedbackResult:
    shown_id = str(item.request_id)
    log = find_prediction_log(item.request_id)
    if log is None:
        raise ItemProblem(Status.UNKNOWN_REQUEST, gettext("No prediction has this request_id."))
    if log.project_id != project.pk:
        raise ItemProblem(Status.OTHER_PROJECT, gettext("This request_id belongs to another project's prediction."))
    if item.correct_label:
        _check_label(project, item.correct_label)
    fingerprint = _fingerprint(item)
    existing = PredictionFeedback.objects.filter(prediction=log, fingerprint=fingerprint).first()
    if existing is not None:
        return _duplicate(index, shown_id, existing)
    try:
        with transaction.atomic():
            feedback = PredictionFeedback.objects.create(
                project=project,
                prediction=log,
                token=token,
                correct_label=item.correct_label,
                outcome=item.outcome,
                outcome_value=item.outcome_value,
                comment=item.comment,
                fingerprint=fingerprint,
            )
    except IntegrityError:  # the same item arrived in a parallel request
        return _duplicate(index, shown_id, PredictionFeedback.objects.get(prediction=log, fingerprint=fingerprint))
    task = _queue_correction(project, log, feedback)
    return FeedbackResult(
        index=index,
        request_id=shown_id,
        status=Status.STORED,
        feedback_id=feedback.pk,
        review_task_id=task.pk if task else None,
    )


def _duplicate(index: int, request_id: str, existing: PredictionFeedback) -> FeedbackResult:
    return FeedbackResult(
        index=index,
        request_id=request_id,
        status=Status.DUPLICATE,
        message=gettext("This feedback was already stored; nothing changed."),
        feedback_id=existing.pk,
        review_task_id=existing.review_task_id,
    )


def _check_label(project: Project, label_key: str) -> None:
    from labeling.services.gold import require_published, validate_label

    try:
        validate_label(require_published(project), label_key)
    except ServiceError as exc:
        raise ItemProblem(Status.UNKNOWN_LABEL, exc.message) from None


def _fingerprint(item: FeedbackItem) -> str:
    content = [item.correct_label, item.outcome, item.outcome_value, item.comment]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()


def _queue_correction(project: Project, log: PredictionLog, feedback: PredictionFeedback) -> ReviewTask | None:
    """A label that differs from the served one goes to the reviewers; a confirmation only counts in the
    realised figures."""
    from labeling.services.items import get_or_create_item
    from labeling.services.review import create_review_task

    if not feedback.correct_label or feedback.correct_label == log.label:
        return None
    try:
        item, _ = get_or_create_item(project=project, text=log.text_masked, source=FEEDBACK_SOURCE)
    except ServiceError:
        return None  # the item rules refuse the text (e.g. too long): the feedback itself is kept
    task = create_review_task(
        project=project,
        item=item,
        kind=ReviewTask.Kind.FEEDBACK,
        suggested_label=feedback.correct_label,
        confidence=log.confidence,
        topk=log.topk,
        model_version_ref=log.model_version.ref if log.model_version else "",
        risk=correction_risk(
            project, served_label=log.label, confidence=log.confidence, corrected=feedback.correct_label
        ),
        source_ref=str(log.request_id),
    )
    feedback.review_task = task
    feedback.save(update_fields=["review_task"])
    return task


def correction_risk(project: Project, *, served_label: str, confidence: float, corrected: str) -> float:
    """Half the model's confidence in the answer it gave (a confident mistake is systematic), half the share
    of this project's label feedback on `served_label` answers that moved them to `corrected` (a pair confused
    again and again). Both lie in [0, 1], so the risk does too."""
    on_label = PredictionFeedback.objects.filter(project=project, prediction__label=served_label).exclude(
        correct_label=""
    )
    total = on_label.count()
    pair = on_label.filter(correct_label=corrected).count()
    pair_rate = pair / total if total else 0.0
    return round(0.5 * float(confidence) + 0.5 * pair_rate, 6)
