"""Taxonomy pages: versions, the draft editor, publish, diff, export and import. Everyone in the project
may look; only owners (action `edit_taxonomy`) may change anything."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from labeling.api.taxonomy import export_response, read_upload
from labeling.models import Project, TaxonomyVersion
from labeling.permissions import get_project_for
from labeling.selectors.taxonomy import (
    current_draft,
    diff_versions,
    get_label,
    get_version,
    label_to_spec,
    label_tree,
    latest_published,
    list_versions,
)
from labeling.services.taxonomy import (
    add_label,
    create_draft,
    delete_label,
    discard_draft,
    import_taxonomy,
    move_label,
    publish_draft,
    update_label,
)
from labeling.views.projects import project_context
from sceneclf_site.api_errors import NotFoundError, ServiceError


def _draft_or_404(project: Project) -> TaxonomyVersion:
    draft = current_draft(project)
    if draft is None:
        raise Http404("This project has no taxonomy draft.")
    return draft


def _version_or_404(project: Project, number: int) -> TaxonomyVersion:
    try:
        return get_version(project, number)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc


def _problems(exc: ServiceError) -> list[str]:
    details = exc.details if isinstance(exc.details, dict) else {}
    return details.get("problems") or [exc.message]


@login_required
def taxonomy_index(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    context = project_context(
        request,
        project,
        versions=list_versions(project),
        draft=current_draft(project),
        published=latest_published(project),
    )
    return render(request, "labeling/taxonomy/index.html", context)


def _version_context(request: HttpRequest, project: Project, version: TaxonomyVersion) -> dict:
    return project_context(request, project, version=version, tree=label_tree(version))


@login_required
def version_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    version = _version_or_404(project, number)
    return render(request, "labeling/taxonomy/version.html", _version_context(request, project, version))


@login_required
def version_export(request: HttpRequest, slug: str, number: int, fmt: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    version = _version_or_404(project, number)
    if fmt not in {"yaml", "json"}:
        raise Http404("Export as .yaml or .json.")
    return export_response(version, fmt)


@login_required
def version_diff(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    versions = list(list_versions(project))
    numbers = [v.number for v in versions]
    default_b = numbers[0] if numbers else None
    default_a = numbers[1] if len(numbers) > 1 else default_b
    try:
        a = int(request.GET.get("a", default_a or 0))
        b = int(request.GET.get("b", default_b or 0))
    except ValueError:
        a, b = default_a, default_b
    diff = None
    if a in numbers and b in numbers:
        diff = diff_versions(_version_or_404(project, a), _version_or_404(project, b))
    context = project_context(request, project, versions=versions, a=a, b=b, diff=diff)
    return render(request, "labeling/taxonomy/diff.html", context)


# --- Editing (owners) --------------------------------------------------------------------------------


@login_required
@require_POST
def draft_create(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    try:
        draft = create_draft(project=project)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:taxonomy", slug=slug)
    messages.success(request, _("Draft v%(n)s created from the latest published version.") % {"n": draft.number})
    return redirect("labeling:taxonomy_version", slug=slug, number=draft.number)


@login_required
@require_POST
def draft_discard(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    try:
        discard_draft(draft=_draft_or_404(project))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Draft discarded."))
    return redirect("labeling:taxonomy", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def draft_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """GET shows what will change (diff against the latest published) and asks to confirm; POST publishes."""
    project = get_project_for(request.user, slug, "edit_taxonomy")
    draft = _draft_or_404(project)
    problems: list[str] = []
    if request.method == "POST":
        try:
            result = publish_draft(draft=draft, notes=request.POST.get("notes", ""))
        except ServiceError as exc:
            problems = _problems(exc)
        else:
            text = _("Taxonomy v%(n)s published.") % {"n": result.version.number}
            if result.rechecked_gold:
                text += " " + _("%(k)s gold labels were marked for re-check.") % {"k": result.rechecked_gold}
            messages.success(request, text)
            return redirect("labeling:taxonomy_version", slug=slug, number=result.version.number)
    published = latest_published(project)
    diff = diff_versions(published, draft) if published else None
    context = project_context(request, project, draft=draft, published=published, diff=diff, problems=problems)
    return render(request, "labeling/taxonomy/publish.html", context)


class LabelForm(forms.Form):
    key = forms.CharField(max_length=64, label=_("Key"), help_text=_("Stable identifier, e.g. 支付. No spaces."))
    name = forms.CharField(max_length=100, label=_("Display name"))
    parent = forms.ChoiceField(required=False, label=_("Parent (two levels at most)"))
    definition = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), label=_("Definition"))
    decision_rules = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label=_("Decision rules")
    )
    examples = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label=_("Examples (one per line)")
    )
    counter_examples = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label=_("Counter-examples (one per line)")
    )
    edge_cases = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label=_("Edge cases (one per line)")
    )
    hotkey = forms.CharField(
        max_length=1,
        required=False,
        strip=False,
        label=_("Hotkey (one character)"),
        help_text=_("Not s, u, e, / or ?: the labelling pages use them for skip, undo, examples, filter and help."),
    )
    order = forms.IntegerField(min_value=0, required=False, label=_("Order"))
    is_fallback = forms.BooleanField(required=False, label=_("Fallback label (其他 / other)"))

    LIST_FIELDS = ("examples", "counter_examples", "edge_cases")

    def __init__(self, *args, draft: TaxonomyVersion, editing: str | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        parents = draft.labels.filter(parent__isnull=True, is_fallback=False).exclude(key=editing or "")
        self.fields["parent"].choices = [("", "—"), *[(p.key, f"{p.name} ({p.key})") for p in parents]]

    @classmethod
    def initial_from(cls, label) -> dict:  # type: ignore[no-untyped-def]
        data = label_to_spec(label).to_mapping()
        for name in cls.LIST_FIELDS:
            data[name] = "\n".join(data[name])
        data["parent"] = data["parent"] or ""
        return data

    def service_data(self) -> dict:
        data = dict(self.cleaned_data)
        for name in self.LIST_FIELDS:
            data[name] = [line.strip() for line in data[name].splitlines() if line.strip()]
        data["parent"] = data["parent"] or None
        data["hotkey"] = data["hotkey"].strip()
        if data["order"] is None:
            del data["order"]  # keep the current position (or append, for a new label)
        return data


def _label_form_problems(form: forms.Form, exc: ServiceError) -> list[str]:
    """Errors the service names a field for go on that field; the rest are listed above the form."""
    fields = exc.details.get("fields", {}) if isinstance(exc.details, dict) else {}
    for name, errors in fields.items():
        for error in errors:
            form.add_error(name if name in form.fields else None, error)
    return [] if fields else _problems(exc)


def _render_label_form(request, project, draft, form, label=None, problems=()):  # type: ignore[no-untyped-def]
    context = project_context(request, project, draft=draft, form=form, label=label, problems=list(problems))
    return render(request, "labeling/taxonomy/label_form.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def label_create(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    draft = _draft_or_404(project)
    form = LabelForm(request.POST or None, draft=draft)
    if request.method == "POST" and form.is_valid():
        try:
            label = add_label(draft=draft, data=form.service_data())
        except ServiceError as exc:
            return _render_label_form(request, project, draft, form, problems=_label_form_problems(form, exc))
        messages.success(request, _("Label “%(key)s” added.") % {"key": label.key})
        return redirect("labeling:taxonomy_version", slug=slug, number=draft.number)
    return _render_label_form(request, project, draft, form)


@login_required
@require_http_methods(["GET", "POST"])
def label_edit(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    draft = _draft_or_404(project)
    try:
        label = get_label(draft, key)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    form = LabelForm(request.POST or None, draft=draft, editing=key, initial=LabelForm.initial_from(label))
    if request.method == "POST" and form.is_valid():
        try:
            label = update_label(draft=draft, key=key, data=form.service_data())
        except ServiceError as exc:
            problems = _label_form_problems(form, exc)
            return _render_label_form(request, project, draft, form, label=label, problems=problems)
        messages.success(request, _("Label “%(key)s” saved.") % {"key": label.key})
        return redirect("labeling:taxonomy_version", slug=slug, number=draft.number)
    return _render_label_form(request, project, draft, form, label=label)


def _after_draft_change(request: HttpRequest, project: Project, draft: TaxonomyVersion) -> HttpResponse:
    """htmx requests get the refreshed label table only; plain form posts go back to the version page."""
    if request.htmx:
        context = _version_context(request, project, draft)
        return render(request, "labeling/taxonomy/_label_table.html", context)
    return redirect("labeling:taxonomy_version", slug=project.slug, number=draft.number)


@login_required
@require_POST
def label_delete(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    draft = _draft_or_404(project)
    try:
        delete_label(draft=draft, key=key)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Label “%(key)s” deleted.") % {"key": key})
    return _after_draft_change(request, project, draft)


@login_required
@require_POST
def label_move(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    draft = _draft_or_404(project)
    offset = -1 if request.POST.get("direction") == "up" else 1
    try:
        move_label(draft=draft, key=key, offset=offset)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return _after_draft_change(request, project, draft)


@login_required
@require_POST
def taxonomy_import(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "edit_taxonomy")
    try:
        text, fmt = read_upload(request.FILES.get("file"))
        draft = import_taxonomy(
            project=project, text=text, fmt=fmt, replace_draft=request.POST.get("replace_draft") == "on"
        )
    except ServiceError as exc:
        context = project_context(
            request,
            project,
            versions=list_versions(project),
            draft=current_draft(project),
            published=latest_published(project),
            import_problems=_problems(exc),
        )
        return render(request, "labeling/taxonomy/index.html", context, status=400)
    messages.success(request, _("Imported as draft v%(n)s. Review it, then publish.") % {"n": draft.number})
    return redirect("labeling:taxonomy_version", slug=slug, number=draft.number)
