"""Adjudication and review queue pages (reviewers and owners)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling.models import ReviewTask
from labeling.permissions import get_project_for
from labeling.selectors.history import gold_provenance, gold_provenance_for, open_conflicts
from labeling.selectors.review import adjudication_queue, open_review_tasks, recheck_queue, review_task_get
from labeling.selectors.workspace import workspace_labels
from labeling.services.adjudication import adjudicate
from labeling.services.gold import latest_published
from labeling.services.review import bulk_recheck_gold, resolve_review_task
from labeling.views.projects import project_context
from sceneclf_site.api_errors import ServiceError

QUEUE_PAGE = 50


def _labels(project):  # type: ignore[no-untyped-def]
    taxonomy = latest_published(project)
    return workspace_labels(taxonomy) if taxonomy else []


@login_required
@require_GET
def adjudication_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "adjudicate")
    entries = adjudication_queue(project, limit=QUEUE_PAGE)
    context = project_context(request, project, entries=entries, labels=_labels(project))
    return render(request, "labeling/review/adjudication.html", context)


@login_required
@require_POST
def adjudicate_item(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "adjudicate")
    try:
        gold = adjudicate(
            project=project,
            item_id=item_id,
            label_key=request.POST.get("label", ""),
            decided_by=request.user,
            reason=request.POST.get("reason", ""),
        )
        messages.success(request, _("Decided: %(label)s.") % {"label": gold.label_key})
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("labeling:adjudication", project.slug)


@login_required
@require_GET
def review_queue_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    kind = request.GET.get("kind", "")
    if kind and kind not in ReviewTask.Kind.values:
        kind = ""
    tasks = open_review_tasks(project, kind or None)
    shown = list(tasks[:QUEUE_PAGE])
    gold = gold_provenance_for(task.item_id for task in shown)
    context = project_context(
        request,
        project,
        tasks=[(task, gold.get(task.item_id)) for task in shown],
        task_count=tasks.count(),
        rechecks=recheck_queue(project)[:QUEUE_PAGE],
        kinds=ReviewTask.Kind.choices,
        kind=kind,
        labels=_labels(project),
    )
    return render(request, "labeling/review/queue.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def review_task_page(request: HttpRequest, slug: str, task_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    task = review_task_get(project, task_id)
    if task is None:
        raise Http404("No such review task.")
    error = ""
    if request.method == "POST":
        try:
            outcome = resolve_review_task(
                project=project,
                task_id=task.pk,
                resolved_by=request.user,
                # A label button sends only the label: a correction to it.
                action=request.POST.get("action") or ("correct" if request.POST.get("label") else ""),
                label_key=request.POST.get("label", ""),
                comment=request.POST.get("comment", ""),
                override=request.POST.get("override") == "on",
                reason=request.POST.get("reason", ""),
            )
        except ServiceError as exc:
            error = exc.message
        else:
            _outcome_message(request, outcome.outcome, outcome.task.resolved_label)
            following = open_review_tasks(project).first()
            if following is not None:
                return redirect("labeling:review_task", project.slug, following.pk)
            return redirect("labeling:review", project.slug)
    context = project_context(
        request,
        project,
        task=task,
        gold=gold_provenance(task.item),
        conflicts=open_conflicts(task.item),
        labels=_labels(project),
        error=error,
    )
    return render(request, "labeling/review/task.html", context)


def _outcome_message(request: HttpRequest, outcome: str, label: str) -> None:
    if outcome == "sent_to_adjudication":
        messages.warning(
            request,
            _("Your decision (%(label)s) differs from the existing gold label: it went to adjudication.")
            % {"label": label},
        )
    elif outcome == "overridden":
        messages.success(request, _("Gold label overridden: %(label)s.") % {"label": label})
    elif outcome == "gold_confirmed":
        messages.success(request, _("Review saved; it agrees with the existing gold label."))
    else:
        messages.success(request, _("Review saved; the item now has a gold label."))


@login_required
@require_POST
def recheck_bulk(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "review")
    try:
        item_ids = [int(value) for value in request.POST.getlist("item_id")]
        golds = bulk_recheck_gold(
            project=project, item_ids=item_ids, label_key=request.POST.get("label", ""), decided_by=request.user
        )
    except ValueError:
        messages.error(request, _("The form lost its items; reload the page."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("%(n)s items re-checked as %(label)s.") % {"n": len(golds), "label": golds[0].label_key},
        )
    return redirect("labeling:review", project.slug)
