"""An import's report page (htmx-polled progress, rejections grouped by reason and label) and the owner's
decisions on lines held for an unknown label."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from labeling.models import ImportHeldLine, ImportJob, Project
from labeling.permissions import can, get_project_for
from labeling.selectors.imports import rejection_groups
from labeling.selectors.items import import_job_get
from labeling.services.import_review import HeldOutcome, held_action
from sceneclf_site.api_errors import NotFoundError, ServiceError


def _job_or_404(project: Project, job_id: int) -> ImportJob:
    try:
        return import_job_get(project, job_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc


def _report_context(request: HttpRequest, project: Project, job: ImportJob) -> dict:
    groups = rejection_groups(job) if job.rejections else []
    return {
        "project": project,
        "job": job,
        "groups": groups,
        "waiting": sum(group.waiting for group in groups),
        "can_manage": can(request.user, project, "manage"),
    }


@login_required
@require_GET
def import_job_page(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    job = _job_or_404(project, job_id)
    return render(request, "labeling/items/import_job.html", _report_context(request, project, job))


@login_required
@require_GET
def import_job_progress(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """The progress fragment htmx polls; it stops polling once the job has finished."""
    project = get_project_for(request.user, slug, "view")
    job = _job_or_404(project, job_id)
    return render(request, "labeling/items/_import_progress.html", _report_context(request, project, job))


def _chosen_labels(request: HttpRequest, job: ImportJob) -> list[str]:
    if request.POST.get("all") == "1":
        return list(
            ImportHeldLine.objects.filter(job=job, status=ImportHeldLine.Status.HELD)
            .values_list("label", flat=True)
            .distinct()
        )
    return request.POST.getlist("label")


def _outcome_message(action: str, outcome: HeldOutcome) -> str:
    if action == "add_to_draft":
        if not outcome.labels_added:
            return _("The draft already has these labels. Publish it, then run the held lines again.")
        return _("Added to the taxonomy draft: %(keys)s. Publish the draft, then run the held lines again.") % {
            "keys": ", ".join(outcome.labels_added)
        }
    if action == "reject":
        return _("%(n)s held lines rejected.") % {"n": outcome.lines}
    return _(
        "%(n)s held lines imported: %(created)s new items, %(labeled)s gold labels, %(conflicts)s conflicts; "
        "%(still)s still held."
    ) % {
        "n": outcome.lines,
        "created": outcome.created,
        "labeled": outcome.labeled,
        "conflicts": outcome.conflicts,
        "still": outcome.still_held,
    }


@login_required
@require_POST
def import_held_action(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    job = _job_or_404(project, job_id)
    action = request.POST.get("action", "")
    try:
        outcome = held_action(job=job, action=action, labels=_chosen_labels(request, job))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _outcome_message(action, outcome))
    return redirect("labeling:import_job", slug=project.slug, job_id=job.pk)
