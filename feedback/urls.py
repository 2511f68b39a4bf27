from django.urls import path

from feedback.views import monitoring, predictions

app_name = "feedback"
urlpatterns: list = [
    path("projects/<slug:slug>/predictions/", predictions.predictions_page, name="predictions"),
    path("projects/<slug:slug>/monitoring/", monitoring.monitoring_page, name="monitoring"),
    path("projects/<slug:slug>/monitoring/drift-check", monitoring.request_check, name="drift_check"),
]
