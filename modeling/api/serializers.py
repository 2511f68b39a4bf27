"""Thin DRF serializers for training runs and model versions."""

from __future__ import annotations

from rest_framework import serializers

from modeling.models import ModelVersion, Route, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id", "route", "params", "status", "stage", "progress", "log", "error", "timings", "task_id",
            "cancel_requested", "trigger", "created_at", "started_at", "finished_at", "heartbeat_at", "model_version",
        ]  # fmt: skip
        read_only_fields = fields

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.number if version is not None else None


class TrainingRunCreateSerializer(serializers.Serializer):
    route = serializers.ChoiceField(choices=[Route.PROBE, Route.TFIDF], default=Route.PROBE)
    params = serializers.DictField(required=False, default=dict)
    auto_publish = serializers.BooleanField(required=False, default=False)


class ModelVersionSerializer(serializers.ModelSerializer):
    ref = serializers.CharField(read_only=True)
    taxonomy_version = serializers.IntegerField(source="taxonomy.number", read_only=True)
    run = serializers.PrimaryKeyRelatedField(read_only=True)
    training_items = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "number", "ref", "status", "route", "backbone_name", "backbone_fingerprint", "taxonomy_version",
            "label_keys", "metrics", "gate", "temperature", "threshold", "class_thresholds", "manifest", "run",
            "training_items", "created_at", "published_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_training_items(self, version: ModelVersion) -> int:
        return len(version.training_snapshot or [])
