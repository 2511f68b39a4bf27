"""Pages for projects: list, dashboard, members, API tokens and settings. Services do the work."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from labeling.authentication import creator_vouches
from labeling.models import Project, Role
from labeling.permissions import can_create_projects, get_project_for
from labeling.selectors.projects import (
    members_of,
    project_permissions,
    project_stats,
    projects_for_user,
    roles_of,
    tokens_of,
)
from labeling.services.projects import (
    ABSTAIN_TARGET_KINDS,
    SETTINGS_FIELDS,
    accept_invitation,
    add_member_by_username,
    create_api_token,
    create_invitation,
    create_member_account,
    create_project,
    open_invitation,
    remove_membership,
    revoke_api_token,
    update_project_settings,
)
from sceneclf_site.api_errors import ServiceError


def project_context(request: HttpRequest, project: Project, **extra) -> dict:  # type: ignore[no-untyped-def]
    """What every project page template needs (base.html's nav reads `project`)."""
    return {"project": project, "can": project_permissions(request.user, project), **extra}


class ProjectCreateForm(forms.Form):
    slug = forms.SlugField(max_length=64, label=_("Slug (used in URLs)"))
    name = forms.CharField(max_length=200, label=_("Name"))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label=_("Description"))


@login_required
@require_http_methods(["GET", "POST"])
def project_list(request: HttpRequest) -> HttpResponse:
    may_create = can_create_projects(request.user)
    if request.method == "POST" and not may_create:
        raise PermissionDenied("You may not create projects.")
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = create_project(owner=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Project created. Add labels to its taxonomy draft next."))
            return redirect("labeling:project_detail", slug=project.slug)
    projects = [(project, roles_of(request.user, project)) for project in projects_for_user(request.user)]
    context = {"projects": projects, "form": form, "may_create": may_create}
    return render(request, "labeling/projects/list.html", context)


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    context = project_context(request, project, stats=project_stats(project), roles=roles_of(request.user, project))
    return render(request, "labeling/projects/detail.html", context)


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label=_("Username"))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR, label=_("Role"))


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            add_member_by_username(project=project, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Member added."))
            return redirect("labeling:members", slug=slug)
    context = project_context(
        request,
        project,
        members=members_of(project),
        form=form,
        invite_form=InviteForm(),
        account_form=AccountCreateForm(),
        invite=request.session.pop(ISSUED_INVITE_KEY, None),
    )
    return render(request, "labeling/projects/members.html", context)


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    try:
        remove_membership(project=project, membership_id=membership_id)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Member removed."))
    return redirect("labeling:members", slug=slug)


class AccountCreateForm(forms.Form):
    username = forms.CharField(max_length=150, label=_("Username"))
    password = forms.CharField(widget=forms.PasswordInput, label=_("First password (hand it over; they can change it)"))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR, label=_("Role"))


@login_required
@require_POST
def member_create(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    form = AccountCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Fill in a username, a password and a role."))
        return redirect("labeling:members", slug=slug)
    try:
        membership = create_member_account(project=project, **form.cleaned_data)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Account %(username)s created as %(role)s.")
            % {"username": membership.user.username, "role": membership.get_role_display()},
        )
    return redirect("labeling:members", slug=slug)


class InviteForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR, label=_("Role"))


ISSUED_INVITE_KEY = "issued_invitation"


@login_required
@require_POST
def member_invite(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    form = InviteForm(request.POST)
    if form.is_valid():
        issued = create_invitation(project=project, role=form.cleaned_data["role"], created_by=request.user)
        link = request.build_absolute_uri(reverse("labeling:invite_accept", args=[issued.secret]))
        # Shown once on the members page after the redirect; only a hash of the secret is stored.
        request.session[ISSUED_INVITE_KEY] = {"link": link, "role": issued.invitation.get_role_display()}
    return redirect("labeling:members", slug=slug)


class InviteAcceptForm(forms.Form):
    username = forms.CharField(max_length=150, label=_("Username"))
    password = forms.CharField(widget=forms.PasswordInput, label=_("Password"))
    password_again = forms.CharField(widget=forms.PasswordInput, label=_("Password again"))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("password") != data.get("password_again"):
            raise forms.ValidationError(_("The two passwords differ."))
        return data


@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, secret: str) -> HttpResponse:
    try:
        invitation = open_invitation(secret)
    except ServiceError as exc:
        raise Http404(exc.message) from exc
    form = InviteAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = accept_invitation(
                secret=secret, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("labeling:project_detail", slug=invitation.project.slug)
    context = {"form": form, "invitation": invitation}
    return render(request, "labeling/projects/invite_accept.html", context)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, label=_("Token name (e.g. the client that uses it)"))


ISSUED_TOKEN_KEY = "issued_api_token"


def _pop_issued_token(request: HttpRequest, project: Project) -> dict | None:
    shown = request.session.pop(ISSUED_TOKEN_KEY, None)
    if not shown:
        return None
    token = tokens_of(project).filter(pk=shown["token_id"]).first()
    return {"token": token, "secret": shown["secret"]} if token is not None else None


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = create_api_token(project=project, name=form.cleaned_data["name"], created_by=request.user)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            # Redirect so a reload cannot post the form again; the secret waits in the session for one page view.
            request.session[ISSUED_TOKEN_KEY] = {"token_id": issued.token.pk, "secret": issued.secret}
            return redirect("labeling:tokens", slug=slug)
    issued = _pop_issued_token(request, project)
    listed = list(tokens_of(project))
    for token in listed:
        token.usable = token.is_active and creator_vouches(token)  # type: ignore[attr-defined]
    context = project_context(request, project, tokens=listed, form=form, issued=issued)
    return render(request, "labeling/projects/tokens.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    try:
        token = revoke_api_token(project=project, token_id=token_id)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("labeling:tokens", slug=slug)


ABSTAIN_TARGET_KIND_LABELS = {
    "precision": _("precision"),
    "coverage": _("coverage"),
    "macro_f1": _("macro_f1"),
    "balanced": _("balanced"),
    "in_scope_acc": _("in_scope_acc"),
}


class ProjectSettingsForm(forms.ModelForm):
    abstain_target_kind = forms.ChoiceField(
        choices=[(kind, ABSTAIN_TARGET_KIND_LABELS.get(kind, kind)) for kind in ABSTAIN_TARGET_KINDS],
        label=_("Abstention target kind"),
    )

    class Meta:
        model = Project
        fields = list(SETTINGS_FIELDS)
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        labels = {
            "name": _("Name"),
            "description": _("Description"),
            "keep_raw_text": _("Keep raw text"),
            "overlap_k": _("Overlap k"),
            "agreement_share": _("Agreement share"),
            "agreement_threshold": _("Agreement threshold"),
            "show_model_suggestion": _("Show model suggestion"),
            "abstain_target": _("Abstain target"),
            "retrain_every_n_gold": _("Retrain every n gold"),
            "alert_webhook_url": _("Alert webhook URL"),
        }
        help_texts = {
            "keep_raw_text": _("Also store the unmasked text of imported items (off: only PII-masked text is kept)."),
            "overlap_k": _("Annotators per item."),
            "agreement_share": _("Share of items (0–1) that always get at least two annotators."),
            "agreement_threshold": _("Agreement below this flags a label (0–1)."),
            "abstain_target": _("Target precision on answered texts, or target coverage (0–1)."),
            "retrain_every_n_gold": _("Retrain automatically after this many new gold labels."),
            "alert_webhook_url": _(
                "Monitoring alerts are POSTed here as JSON (http or https only; leave empty for none)."
            ),
        }


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    # The form validates field types on a copy; the service checks ranges and saves.
    form = ProjectSettingsForm(request.POST or None, instance=Project.objects.get(pk=project.pk))
    if request.method == "POST" and form.is_valid():
        try:
            update_project_settings(project=project, **{name: form.cleaned_data[name] for name in SETTINGS_FIELDS})
        except ServiceError as exc:
            for field_name, problem in (exc.details or {}).items():
                form.add_error(field_name, problem)
            if not exc.details:
                form.add_error(None, exc.message)
        else:
            messages.success(request, _("Settings saved."))
            return redirect("labeling:project_settings", slug=slug)
    return render(request, "labeling/projects/settings.html", project_context(request, project, form=form))
