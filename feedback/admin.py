from django.contrib import admin

from feedback.models import PredictionLog


@admin.register(PredictionLog)
class PredictionLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "project", "model_version", "label", "confidence", "abstained", "latency_ms")
    list_filter = ("abstained", "project")
    search_fields = ("text_masked", "request_id", "session_id")
