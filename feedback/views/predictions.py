"""The predictions page: try the published model in the browser and read the (masked) prediction log."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from feedback.selectors.predictions import prediction_stats, recent_predictions
from feedback.services.predict import parse_predict_request, predict_for_project
from labeling.permissions import can, get_project_for
from sceneclf_site.api_errors import ServiceError


@login_required
def predictions_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "predict")
    context: dict = {"project": project, "text": "", "result": None, "error": None}
    if request.method == "POST":
        context["text"] = request.POST.get("text", "")
        try:
            predict_request = parse_predict_request({"text": context["text"], "k": 3, "explain": True})
            context["result"] = predict_for_project(project=project, request=predict_request)
        except ServiceError as exc:
            context["error"] = exc.message
    if can(request.user, project, "view"):
        context.update(log=recent_predictions(project), stats=prediction_stats(project))
    template = "feedback/_result.html" if request.htmx else "feedback/predictions.html"
    return render(request, template, context)
