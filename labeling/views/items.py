"""Pages for items: one item's page, import upload with htmx-polled progress, split, export."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from labeling.api.items import export_response
from labeling.permissions import get_project_for
from labeling.pii import protect_data
from labeling.selectors.browser import item_label_issue, item_predictions, item_review_tasks
from labeling.selectors.history import gold_provenance, item_annotations, item_get, item_history, open_conflicts
from labeling.selectors.items import (
    import_job_list,
)
from labeling.services.imports import start_import
from labeling.services.splits import assign_splits
from sceneclf_site.api_errors import ServiceError

DEFAULT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}


@login_required
@require_GET
def item_detail_page(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    """One item's provenance. Reviewers and owners only: annotators would see each other's labels."""
    project = get_project_for(request.user, slug, "review")
    item = item_get(project, item_id)
    if item is None:
        raise Http404("No such item in this project.")
    context = {
        "project": project,
        "item": item,
        "gold": gold_provenance(item),
        "annotations": item_annotations(item),
        "events": item_history(item),
        "conflicts": open_conflicts(item),
        "predictions": item_predictions(item),
        "suggestion": getattr(item, "suggestion", None),
        "review_tasks": item_review_tasks(item),
        "label_issue": item_label_issue(item),
        # Stored masked already; masked again on the way out, so an older row cannot show PII either.
        "metadata": protect_data(item.metadata or {}, project.pii_field_mode),
    }
    return render(request, "labeling/items/detail.html", context)


@login_required
def import_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, gettext("Choose a JSONL, CSV or XLSX file to import."))
        else:
            try:
                job = start_import(
                    project=project,
                    content=upload,
                    file_name=upload.name,
                    source=request.POST.get("source", ""),
                    created_by=request.user,
                )
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                return redirect("labeling:import_job", slug=project.slug, job_id=job.pk)
    context = {"project": project, "jobs": import_job_list(project)[:20]}
    return render(request, "labeling/items/import.html", context)


@login_required
@require_POST
def split_action(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    try:
        shares = {name: float(request.POST.get(name, default)) for name, default in DEFAULT_SHARES.items()}
        seed = int(request.POST.get("seed", 0))
    except ValueError:
        messages.error(request, gettext("Split shares and seed must be numbers."))
        return redirect("labeling:items", slug=project.slug)
    try:
        result = assign_splits(project=project, seed=seed, actor=request.user, **shares)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        counts = result.counts
        messages.success(
            request,
            _(
                "Split done: %(assigned)s gold labels got a split (existing splits never move). Now train "
                "%(train)s, val %(val)s, test %(test)s, unassigned %(unassigned)s."
            )
            % {"assigned": result.assigned, **counts},
        )
    return redirect("labeling:items", slug=project.slug)


@login_required
@require_GET
def export_download(request: HttpRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    project = get_project_for(request.user, slug, "manage")
    only_gold = request.GET.get("only_gold") == "1"
    try:
        return export_response(project, request.GET.get("fmt", "jsonl"), only_gold=only_gold)
    except ServiceError as exc:
        return HttpResponseBadRequest(exc.message)
