"""Abstained predictions go to the reviewers' queue: one Item (source "predict") per distinct text and one
open ReviewTask(kind=abstained) per item, created through labeling's services."""

from __future__ import annotations

import logging

from labeling.models import Project, ReviewTask
from modeling.services.serving import ServedPrediction
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

PREDICT_SOURCE = "predict"


def queue_abstained(project: Project, model_ref: str, abstained: list[tuple[str, ServedPrediction]]) -> int:
    """Returns how many review tasks were created. A text already waiting in the queue is not added twice."""
    from labeling.services.items import get_or_create_item
    from labeling.services.review import create_review_task

    created = 0
    for text, prediction in abstained:
        try:
            item, _ = get_or_create_item(project=project, text=text, source=PREDICT_SOURCE)
        except ServiceError:
            # e.g. longer than the project's item limit: the prediction is still logged, just not queued.
            logger.info("abstained text not queued for review (project %s): rejected by item rules", project.slug)
            continue
        if ReviewTask.objects.filter(item=item, kind=ReviewTask.Kind.ABSTAINED, status=ReviewTask.Status.OPEN).exists():
            continue
        create_review_task(
            project=project,
            item=item,
            kind=ReviewTask.Kind.ABSTAINED,
            suggested_label=prediction.topk[0]["label"] if prediction.topk else prediction.label,
            confidence=prediction.confidence,
            topk=prediction.topk,
            neighbours=prediction.neighbours,
            model_version_ref=model_ref,
        )
        created += 1
    return created
