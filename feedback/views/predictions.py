"""The predictions page: try the published model in the browser, and read the (masked) prediction log with
filters, the feedback next to each prediction, and a CSV export of what the filters show."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from feedback.selectors.predictions import LogFilters, csv_lines, filter_choices, filtered_predictions, prediction_stats
from feedback.services.log_writer import flush_pending
from feedback.services.predict import parse_predict_request, predict_for_project
from labeling.permissions import can, get_project_for
from sceneclf_site.api_errors import ServiceError

PAGE_ROWS = 100


@login_required
def predictions_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "predict")
    context: dict = {"project": project, "text": "", "result": None, "error": None}
    if request.method == "POST":
        context["text"] = request.POST.get("text", "")
        try:
            predict_request = parse_predict_request({"text": context["text"], "k": 3, "explain": True})
            context["result"] = predict_for_project(project=project, request=predict_request)
            flush_pending()
        except ServiceError as exc:
            context["error"] = exc.message
    if can(request.user, project, "view"):
        filters = LogFilters.from_query(request.GET)
        logs = filtered_predictions(project, filters)
        if request.method == "GET" and request.GET.get("format") == "csv":
            response = StreamingHttpResponse(csv_lines(logs), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{project.slug}-predictions.csv"'
            return response
        context.update(
            log=logs[:PAGE_ROWS],
            matching=logs.count(),
            stats=prediction_stats(project),
            filters=filters,
            choices=filter_choices(project),
            query=request.GET.urlencode(),
        )
    template = "feedback/_result.html" if request.htmx else "feedback/predictions.html"
    return render(request, template, context)
