"""The nearest items ("items like this one") by cached features, as a page and as the item page's fragment."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labeling.permissions import get_project_for
from labeling.selectors.history import item_get
from modeling.selectors.similarity import similar_items
from sceneclf_site.api_errors import ServiceError

DEFAULT_K = 20
MAX_K = 100


@login_required
@require_GET
def item_similar(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    item = item_get(project, item_id)
    if item is None:
        raise Http404("No such item in this project.")
    try:
        k = max(1, min(int(request.GET.get("k", DEFAULT_K)), MAX_K))
    except ValueError:
        k = DEFAULT_K
    context = {"project": project, "item": item, "neighbourhood": None, "error": ""}
    try:
        context["neighbourhood"] = similar_items(project, item, k=k)
    except ServiceError as exc:
        context["error"] = exc.message
    template = "modeling/_similar.html" if request.htmx else "modeling/similar.html"
    return render(request, template, context)
