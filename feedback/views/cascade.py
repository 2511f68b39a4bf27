"""The model page's fragment of cascade outcomes: what the re-check changed in production and how often it
was right."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from feedback.selectors.cascade import cascade_outcomes
from labeling.permissions import get_project_for


@login_required
@require_GET
def cascade_outcomes_partial(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    return render(request, "feedback/_cascade_outcomes.html", {"outcomes": cascade_outcomes(project)})
