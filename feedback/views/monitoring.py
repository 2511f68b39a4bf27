"""The monitoring dashboard: production figures per version and day, per label, the confidence-based
estimate beside realised accuracy, drift checks and alerts, with plots."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from feedback.api.monitoring import parse_days
from feedback.selectors.monitoring import dashboard, production_reliability
from feedback.services.monitoring import request_drift_check
from labeling.permissions import can, get_project_for
from sceneclf_site.api_errors import ServiceError

DAY_CHOICES = (1, 7, 14, 30, 90)


def _plots(data: dict[str, Any], reliability: dict | None) -> dict[str, str]:
    from modeling.engine.evaluation import production_plots

    plots: dict[str, str] = {}
    if data["versions"]:
        plots["series"] = production_plots.daily_series_plot(data["versions"])
    if reliability is not None:
        plots["reliability"] = production_plots.production_reliability_plot(reliability)
    return plots


@login_required
@require_GET
def monitoring_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    try:
        days = parse_days(request.GET.get("days"))
    except ServiceError:
        days = 14
    data = dashboard(project, days=days)
    context = {
        "project": project,
        "data": data,
        "days": days,
        "day_choices": DAY_CHOICES,
        "plots": _plots(data, production_reliability(project, days=days)),
        "confusion_rows": list(
            zip(data["labels"]["confusion"]["labels"], data["labels"]["confusion"]["matrix"], strict=True)
        ),
        "can_manage": can(request.user, project, "manage"),
    }
    return render(request, "feedback/monitoring.html", context)


@login_required
@require_POST
def request_check(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    if request_drift_check(project=project) is None:
        messages.warning(request, _("No drift check started: no recent predictions, or a check is still running."))
    else:
        messages.success(request, _("Drift check queued; its result appears here when the worker is done."))
    return redirect("feedback:monitoring", project.slug)
