from django.urls import path

from feedback.views import cascade, item_log, monitoring, predictions

app_name = "feedback"
urlpatterns: list = [
    path("projects/<slug:slug>/predictions/", predictions.predictions_page, name="predictions"),
    path("projects/<slug:slug>/items/<int:item_id>/served/", item_log.item_prediction_log, name="item_prediction_log"),
    path("projects/<slug:slug>/monitoring/", monitoring.monitoring_page, name="monitoring"),
    path("projects/<slug:slug>/cascade-outcomes/", cascade.cascade_outcomes_partial, name="cascade_outcomes"),
    path("projects/<slug:slug>/monitoring/drift-check", monitoring.request_check, name="drift_check"),
]
