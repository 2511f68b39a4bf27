"""The agreement page: stored reports (with a bootstrap interval and a warning on small overlaps), flagged
labels and their disagreements as edge-case candidates, and the items by agreement, lowest first."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from labeling.models import MIN_OVERLAP_ITEMS
from labeling.permissions import can, get_project_for
from labeling.selectors.agreement import disagreements_for, items_by_agreement, latest_reports
from labeling.services.agreement import add_disagreement_as_edge_case, queue_low_agreement
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


QUEUE_SHOWN = 20


@login_required
@require_GET
def agreement_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    reports = []
    for report in latest_reports(project):
        flagged = [(label, disagreements_for(report, label)) for label in report.flagged_labels]
        reports.append(
            {
                "report": report,
                "confusion": _confusion_rows(report.confusion),
                "flagged": flagged,
                "lowest": items_by_agreement(report, limit=QUEUE_SHOWN),
            }
        )
    context = project_context(
        request,
        project,
        reports=reports,
        min_overlap=MIN_OVERLAP_ITEMS,
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


@login_required
@require_POST
def agreement_queue_review(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    try:
        tasks = queue_low_agreement(
            project=project,
            report_id=int(request.POST.get("report_id", "0")),
            limit=int(request.POST.get("limit", "50")),
        )
    except ValueError:
        messages.error(request, _("The form lost its report; reload the page."))
        return redirect("labeling:agreement", project.slug)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:agreement", project.slug)
    messages.success(request, _("%(n)s items went to the review queue, lowest agreement first.") % {"n": len(tasks)})
    return redirect(f"{reverse('labeling:review', args=[project.slug])}?kind=low_agreement")
