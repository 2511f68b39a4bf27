"""The item page's fragment of served predictions: what the predict endpoint answered for this item's text."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from feedback.selectors.predictions import predictions_for_text
from labeling.permissions import get_project_for
from labeling.selectors.history import item_get


@login_required
@require_GET
def item_prediction_log(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    item = item_get(project, item_id)
    if item is None:
        raise Http404("No such item in this project.")
    rows = list(predictions_for_text(project, item.text_hash))
    return render(request, "feedback/_item_log.html", {"project": project, "item": item, "rows": rows})
