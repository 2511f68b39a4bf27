"""The annotator workspace page. The page loads once; label / skip / undo post through htmx and get the
next item's panel back, so there is no full page reload between items."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling.models import Assignment, ItemSuggestion, Project
from labeling.permissions import get_project_for
from labeling.selectors.workspace import annotator_progress, recent_annotations, workspace_labels, workspace_settings
from labeling.services.gold import latest_published
from labeling.services.workspace import (
    next_assignment,
    skip_item,
    submit_annotation,
    undo_last,
    update_workspace_settings,
)
from labeling.views.projects import project_context
from sceneclf_site.api_errors import ServiceError


def _suggestion(project: Project, assignment: Assignment | None) -> ItemSuggestion | None:
    if assignment is None or not project.show_model_suggestion:
        return None
    return ItemSuggestion.objects.filter(item_id=assignment.item_id).first()


def _panel_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    taxonomy = latest_published(project)
    assignment = next_assignment(project=project, annotator=request.user) if taxonomy else None
    suggestion = _suggestion(project, assignment)
    labels = workspace_labels(taxonomy) if taxonomy else []
    return project_context(
        request,
        project,
        taxonomy=taxonomy,
        assignment=assignment,
        item=assignment.item if assignment else None,
        labels=labels,
        suggestion=suggestion,
        suggested_key=suggestion.label_key if suggestion else "",
        progress=annotator_progress(project, request.user),
        recent=recent_annotations(project, request.user),
        **extra,
    )


def _panel(request: HttpRequest, project: Project, **extra: Any) -> HttpResponse:
    return render(request, "labeling/workspace/_panel.html", _panel_context(request, project, **extra))


@login_required
@require_GET
def workspace_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "annotate")
    return render(request, "labeling/workspace/page.html", _panel_context(request, project))


@login_required
@require_GET
def workspace_panel(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "annotate")
    return _panel(request, project)


def _item_id(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("item_id", ""))
    except ValueError as exc:
        raise ServiceError(_("The form lost its item; reload the page.")) from exc


@login_required
@require_POST
def workspace_submit(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "annotate")
    try:
        annotation = submit_annotation(
            project=project,
            annotator=request.user,
            item_id=_item_id(request),
            label_key=request.POST.get("label", ""),
            time_ms=request.POST.get("time_ms"),
        ).annotation
    except ServiceError as exc:
        return _panel(request, project, error=exc.message)
    return _panel(request, project, notice=_("Saved as %(label)s.") % {"label": annotation.label_key})


@login_required
@require_POST
def workspace_skip(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "annotate")
    try:
        skip_item(project=project, annotator=request.user, item_id=_item_id(request), reason=request.POST.get("reason"))
    except ServiceError as exc:
        return _panel(request, project, error=exc.message)
    return _panel(request, project, notice=_("Skipped."))


@login_required
@require_POST
def workspace_undo(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "annotate")
    try:
        undo_last(project=project, annotator=request.user)
    except ServiceError as exc:
        return _panel(request, project, error=exc.message)
    return _panel(request, project, notice=_("Undone: the item is back."))


class WorkspaceSettingsForm(forms.Form):
    assignment_ttl_minutes = forms.IntegerField(
        min_value=1, max_value=24 * 60, label=gettext_lazy("Minutes before an abandoned item goes back to the queue")
    )
    accept_majority = forms.BooleanField(
        required=False,
        label=gettext_lazy("With 3 or more annotators, accept a strict majority as gold without adjudication"),
    )
    agreement_batch_size = forms.IntegerField(
        min_value=1, max_value=10_000, label=gettext_lazy("Recompute agreement after this many new annotations")
    )


@login_required
@require_http_methods(["GET", "POST"])
def workspace_settings_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    current = workspace_settings(project)
    initial = {name: getattr(current, name) for name in WorkspaceSettingsForm.base_fields}
    form = WorkspaceSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            update_workspace_settings(project=project, **form.cleaned_data)
            messages.success(request, _("Workspace settings saved."))
            return redirect("labeling:workspace_settings", project.slug)
        except ServiceError as exc:
            form.add_error(None, exc.message)
    return render(request, "labeling/workspace/settings.html", project_context(request, project, form=form))
