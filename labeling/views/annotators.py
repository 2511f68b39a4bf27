"""The annotator statistics page (owners and reviewers) and the owner's check items: which gold items, and
how often they are mixed into the queues."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from labeling.permissions import can, get_project_for
from labeling.selectors.annotators import annotator_stats, check_item_candidates, check_item_list
from labeling.selectors.items import gold_label_keys_in_use
from labeling.selectors.workspace import workspace_settings
from labeling.services.check_items import mark_check_items, unmark_check_items
from labeling.services.workspace import update_workspace_settings
from labeling.views.projects import project_context
from sceneclf_site.api_errors import ServiceError


@login_required
@require_GET
def annotators_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    can_manage = can(request.user, project, "manage")
    label = request.GET.get("label", "").strip()
    context = project_context(
        request,
        project,
        stats=annotator_stats(project),
        check_items=check_item_list(project)[:100],
        candidates=check_item_candidates(project, label=label) if can_manage else [],
        labels=gold_label_keys_in_use(project),
        label_filter=label,
        rate_percent=round(workspace_settings(project).check_item_rate * 100, 1),
        can_manage=can_manage,
    )
    return render(request, "labeling/annotators/page.html", context)


@login_required
@require_POST
def check_items_action(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    item_ids = request.POST.getlist("item_id")
    try:
        if request.POST.get("action") == "unmark":
            removed = unmark_check_items(project=project, item_ids=item_ids)
            messages.success(request, _("%(n)s check items removed.") % {"n": removed})
        else:
            marked = mark_check_items(project=project, item_ids=item_ids, actor=request.user)
            messages.success(request, _("%(n)s items are now check items.") % {"n": len(marked)})
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("labeling:annotators", project.slug)


@login_required
@require_POST
def check_item_rate(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    try:
        rate = float(request.POST.get("rate_percent", "")) / 100
        update_workspace_settings(project=project, check_item_rate=rate)
    except ValueError:
        messages.error(request, _("The rate must be a number (a percentage)."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, _("Check items now make up %(rate)s%% of each annotator's items.") % {"rate": round(rate * 100, 1)}
        )
    return redirect("labeling:annotators", project.slug)
