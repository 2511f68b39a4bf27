from django.urls import path

from feedback.views import predictions

app_name = "feedback"
urlpatterns: list = [
    path("projects/<slug:slug>/predictions/", predictions.predictions_page, name="predictions"),
]
