from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from labeling.models import ApiToken, Project
from modeling.models import Alias, ModelVersion


class PredictionLog(models.Model):
    """One served prediction. Holds the PII-masked text only, never the raw request text."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prediction_logs")
    model_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="predictions")
    request_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    session_id = models.CharField(max_length=128, blank=True)
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL)
    text_masked = models.TextField()
    text_hash = models.CharField(max_length=64, db_index=True)
    label = models.CharField(max_length=64)
    confidence = models.FloatField()
    abstained = models.BooleanField(default=False)
    topk = models.JSONField(default=list)
    latency_ms = models.FloatField()
    # The cascade's stages, in order: [{"stage", "model_version", "label", "confidence", "ms"}, ...].
    stages = models.JSONField(default=list, blank=True)

    # Which alias answered: champion or challenger (returned to the client) or shadow (logged only; its row
    # shares the request_id of the answer that was returned).
    role = models.CharField(max_length=16, choices=Alias.choices, default=Alias.CHAMPION)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "role", "created_at"])]


class PredictionFeedback(models.Model):
    """What a downstream app said about one prediction: a correction, a business outcome, a comment. A
    correction is not gold: it opens a review task, and only the reviewer's decision becomes gold."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prediction_feedback")
    prediction = models.ForeignKey(PredictionLog, on_delete=models.CASCADE, related_name="feedback")
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL)
    correct_label = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=64, blank=True)
    outcome_value = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True, help_text="PII-masked, like every stored text.")
    # sha256 of the item's content: the same item sent twice is stored once (a client may retry).
    fingerprint = models.CharField(max_length=64)
    review_task = models.ForeignKey(
        "labeling.ReviewTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="prediction_feedback"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["prediction", "fingerprint"], name="uniq_feedback_per_prediction"),
        ]
        indexes = [models.Index(fields=["project", "created_at"])]


class DriftCheck(models.Model):
    """One comparison of a window of production traffic with the training snapshot of the version that
    served it: a domain classifier's ROC AUC on the feature vectors and the predicted-label distribution."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DONE = "done", _("Done")
        SKIPPED = "skipped", _("Skipped")
        FAILED = "failed", _("Failed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="drift_checks")
    model_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="drift_checks")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    n_window = models.PositiveIntegerField(default=0)
    n_reference = models.PositiveIntegerField(default=0)
    domain_auc = models.FloatField(null=True, blank=True)
    auc_threshold = models.FloatField(null=True, blank=True)
    label_js = models.FloatField(null=True, blank=True)
    label_js_threshold = models.FloatField(null=True, blank=True)
    feature_alert = models.BooleanField(default=False)
    label_alert = models.BooleanField(default=False)
    detail = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"])]


class MonitoringAlert(models.Model):
    """An alert shown on the dashboard and, when the project sets a webhook URL, POSTed there."""

    class Kind(models.TextChoices):
        FEATURE_DRIFT = "feature_drift", _("Feature drift")
        LABEL_DRIFT = "label_drift", _("Predicted-label drift")

    class Delivery(models.TextChoices):
        NONE = "none", _("No webhook")  # the project has no webhook
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="monitoring_alerts")
    drift_check = models.ForeignKey(DriftCheck, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.TextField()
    detail = models.JSONField(default=dict, blank=True)
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.NONE)
    delivery_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"])]
