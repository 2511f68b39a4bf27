from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .items import Item
from .projects import Project


class ReviewTask(models.Model):
    """One entry of the review queue. Filled by the predict log (abstained / low confidence) and by
    label-quality checks; labeling stores what was suggested, never how a model computed it."""

    class Kind(models.TextChoices):
        ABSTAINED = "abstained", _("Abstained prediction")
        LOW_CONFIDENCE = "low_confidence", _("Low-confidence prediction")
        LABEL_ISSUE = "label_issue", _("Likely mislabelled")
        CONFLICT = "conflict", _("Near-duplicate conflict")
        LOW_AGREEMENT = "low_agreement", _("Low annotator agreement")
        REQUESTED = "requested", _("Sent from the item browser")
        FEEDBACK = "feedback", _("Correction from a downstream app")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RESOLVED = "resolved", _("Resolved")

    class Resolution(models.TextChoices):
        CONFIRMED = "confirmed", _("Confirmed")
        CORRECTED = "corrected", _("Corrected")
        OUT_OF_SCOPE = "out_of_scope", _("Out of scope")
        # The decision differs from the item's gold label: it went to adjudication, gold is unchanged.
        ADJUDICATION = "adjudication", _("Sent to adjudication")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_tasks")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="review_tasks")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    suggested_label = models.CharField(max_length=64, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    topk = models.JSONField(default=list, blank=True)  # [{"label": k, "probability": p}]
    neighbours = models.JSONField(default=list, blank=True)  # [{"text", "label", "similarity"}]
    model_version_ref = models.CharField(max_length=64, blank=True)
    # Higher is reviewed sooner (downstream corrections: model confidence and how often that label pair is
    # confused); 0 for the kinds that keep the queue's first-come order.
    risk = models.FloatField(default=0.0)
    # Where the task came from outside labeling, e.g. the predict request id a correction names.
    source_ref = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True)
    resolved_label = models.CharField(max_length=64, blank=True)
    comment = models.TextField(blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-risk", "created_at"]
        indexes = [models.Index(fields=["project", "status", "kind"])]
