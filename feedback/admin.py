from django.contrib import admin

from feedback.models import DriftCheck, MonitoringAlert, PredictionFeedback, PredictionLog


@admin.register(PredictionLog)
class PredictionLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "project", "model_version", "label", "confidence", "abstained", "latency_ms")
    list_filter = ("abstained", "project")
    search_fields = ("text_masked", "request_id", "session_id")


@admin.register(PredictionFeedback)
class PredictionFeedbackAdmin(admin.ModelAdmin):
    list_display = ("created_at", "project", "prediction", "correct_label", "outcome", "review_task")
    list_filter = ("project",)


@admin.register(DriftCheck)
class DriftCheckAdmin(admin.ModelAdmin):
    list_display = ("created_at", "project", "model_version", "status", "domain_auc", "label_js", "feature_alert")
    list_filter = ("status", "project")


@admin.register(MonitoringAlert)
class MonitoringAlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "project", "kind", "delivery")
    list_filter = ("kind", "delivery", "project")
