from django.contrib import admin

from modeling.models import ModelVersion, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "route", "status", "stage", "progress", "trigger", "created_at", "finished_at")
    list_filter = ("status", "route", "trigger")
    readonly_fields = ("log", "error", "timings", "task_id", "heartbeat_at")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("project", "number", "status", "route", "backbone_name", "created_at", "published_at")
    list_filter = ("status", "route")
    # Status changes go through the publish/rollback services (artifact verification, one transaction).
    readonly_fields = ("status", "manifest", "metrics", "training_snapshot", "backbone_fingerprint", "artifacts_dir")
