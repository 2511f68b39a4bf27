"""The agreement page: stored reports, flagged labels and their disagreements as edge-case candidates."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from labeling.permissions import can, get_project_for
from labeling.selectors.agreement import disagreements_for, latest_reports
from labeling.services.agreement import add_disagreement_as_edge_case
from labeling.tasks_agreement import compute_agreement_task
from labeling.views.projects import project_context
from sceneclf_site.api_errors import ServiceError


def _confusion_rows(confusion: dict) -> list[tuple[str, list[tuple[int, bool]]]]:
    labels = confusion.get("labels", [])
    matrix = confusion.get("matrix", [])
    return [
        (label, [(n, i == j) for j, n in enumerate(row)])
        for i, (label, row) in enumerate(zip(labels, matrix, strict=False))
    ]


@login_required
@require_GET
def agreement_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    reports = []
    for report in latest_reports(project):
        flagged = [(label, disagreements_for(report, label)) for label in report.flagged_labels]
        reports.append({"report": report, "confusion": _confusion_rows(report.confusion), "flagged": flagged})
    context = project_context(
        request,
        project,
        reports=reports,
        can_edit_taxonomy=can(request.user, project, "edit_taxonomy"),
        can_manage=can(request.user, project, "manage"),
    )
    return render(request, "labeling/agreement/page.html", context)


@login_required
@require_POST
def agreement_recompute(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    compute_agreement_task.delay(project.pk)
    messages.success(request, _("Agreement is being recomputed; reload in a moment."))
    return redirect("labeling:agreement", project.slug)


@login_required
@require_POST
def agreement_edge_case(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    try:
        label = add_disagreement_as_edge_case(
            project=project, item_id=int(request.POST.get("item_id", "0")), label_key=request.POST.get("label", "")
        )
        messages.success(
            request,
            _("Added to the edge cases of %(label)s on taxonomy draft v%(n)s.")
            % {"label": label.key, "n": label.taxonomy.number},
        )
    except (ServiceError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
    return redirect("labeling:agreement", project.slug)
