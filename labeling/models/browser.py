"""What the item browser needs besides items: each person's saved views, and the per-item numbers models hand
over as plain data (predictions of a model version, label-issue scores of the label check)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .items import Item
from .projects import Project


class SavedView(models.Model):
    """A person's named filter and sort of the item browser (the query string, without the page)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="saved_views")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_item_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "user", "name"], name="uniq_saved_view_name")]


class ItemPrediction(models.Model):
    """What one model version (`model_ref`, e.g. "demo@v3") answered for an item: its top label (abstained or
    not), the calibrated probability, the margin to the runner-up and the top-3. Written by modeling through
    `labeling.services.predictions`, one row per (item, model_ref)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="item_predictions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="predictions")
    model_ref = models.CharField(max_length=64)
    label_key = models.CharField(max_length=64)
    confidence = models.FloatField()
    margin = models.FloatField()
    abstained = models.BooleanField(default=False)
    topk = models.JSONField(default=list, blank=True)  # [{"label": k, "probability": p}]
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "model_ref"], name="uniq_item_prediction_ref")]
        indexes = [
            models.Index(fields=["project", "model_ref", "confidence"]),
            models.Index(fields=["project", "model_ref", "margin"]),
            models.Index(fields=["project", "model_ref", "label_key"]),
        ]


class LabelIssueScore(models.Model):
    """How likely the item's gold label is wrong, from the last label check (1 − cleanlab's label quality;
    higher = more suspect). `label_key` is the gold label that was scored: after a relabel the score no longer
    applies and the browser ignores it."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="label_issue")
    label_key = models.CharField(max_length=64)
    score = models.FloatField(db_index=True)
    suggested_label = models.CharField(max_length=64, blank=True)
    flagged = models.BooleanField(default=False)
    model_ref = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
