from __future__ import annotations

import uuid

from django.db import models

from labeling.models import ApiToken, Project
from modeling.models import ModelVersion


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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
