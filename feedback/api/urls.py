from django.urls import path

from feedback.api.feedback import FeedbackView
from feedback.api.monitoring import MonitoringView
from feedback.api.predict import PredictView

app_name = "feedback_api"
urlpatterns: list = [
    path("projects/<slug:slug>/predict", PredictView.as_view(), name="predict"),
    path("projects/<slug:slug>/feedback", FeedbackView.as_view(), name="feedback"),
    path("projects/<slug:slug>/monitoring", MonitoringView.as_view(), name="monitoring"),
]
