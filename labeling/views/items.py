"""Pages for items: list with search and filters, import upload with htmx-polled progress, split, export."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from labeling.api.items import export_response
from labeling.permissions import can, get_project_for
from labeling.selectors.history import gold_provenance, item_annotations, item_get, item_history, open_conflicts
from labeling.selectors.items import (
    gold_label_keys_in_use,
    import_job_list,
    item_counts,
    item_list,
)
from labeling.services.imports import start_import
from labeling.services.splits import assign_splits
from sceneclf_site.api_errors import ServiceError

PAGE_SIZE = 50
DEFAULT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLIT_FILTERS = {"train": "train", "val": "val", "test": "test", "unassigned": ""}


@login_required
@require_GET
def item_list_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    query = request.GET.get("q", "").strip()
    split_filter = request.GET.get("split", "")
    label = request.GET.get("label", "").strip()
    gold_filter = request.GET.get("gold", "")
    items = item_list(
        project,
        query=query,
        split=SPLIT_FILTERS.get(split_filter),
        label=label,
        has_gold={"yes": True, "no": False}.get(gold_filter),
    )
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    filters = request.GET.copy()
    filters.pop("page", None)
    context = {
        "project": project,
        "page": page,
        "counts": item_counts(project),
        "labels": gold_label_keys_in_use(project),
        "q": query,
        "split_filter": split_filter,
        "label_filter": label,
        "gold_filter": gold_filter,
        "filter_query": filters.urlencode(),
        "can_manage": can(request.user, project, "manage"),
        "can_review": can(request.user, project, "review"),
    }
    return render(request, "labeling/items/list.html", context)


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
