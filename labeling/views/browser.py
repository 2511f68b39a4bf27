"""The item browser: filter and sort every item (confidence, margin, disagreement, label-issue score, label,
split, source, date, has-gold), saved views per person, and bulk actions behind a confirmation step."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from labeling.models import Project
from labeling.permissions import can, get_project_for
from labeling.selectors.browser import (
    BrowserQuery,
    browse_items,
    browser_choices,
    browser_counts,
    page_rows,
    parse_browser_query,
    saved_views,
)
from labeling.selectors.items import latest_published_taxonomy
from labeling.services import browser as browser_services
from sceneclf_site.api_errors import ServiceError

PAGE_SIZE = 50
# Who may run which bulk action (labeling.permissions actions).
ACTION_PERMISSION = {"queue": "review", "relabel": "review", "split": "manage", "delete": "manage"}
QUEUE_NAMES = {"review": gettext_lazy("review"), "annotation": gettext_lazy("annotation")}


def _query_or_default(request: HttpRequest, project: Project, refs: list[str]) -> tuple[BrowserQuery, str]:
    """The query of the request (an unreadable value is reported and the filter left out)."""
    try:
        query = parse_browser_query(request.GET)
        error = ""
    except ServiceError as exc:
        query, error = BrowserQuery(), exc.message
    if not query.model and refs:
        query = replace(query, model=refs[0])
    return query, error


def _sort_links(query: BrowserQuery) -> dict[str, str]:
    """For each sortable column: the query string that sorts by it (flipping the direction when it already does)."""
    links = {}
    for key in ("id", "created", "confidence", "margin", "disagreement", "issue"):
        current = query.sort
        target = f"-{key}" if current == key else key
        links[key] = QueryDict(mutable=True)
        links[key].update({**query.as_params(), "sort": target})
        links[key] = links[key].urlencode()
    return links


def _allowed_actions(user: Any, project: Project) -> list[str]:
    return [action for action, needed in ACTION_PERMISSION.items() if can(user, project, needed)]


@login_required
@require_GET
def item_browser_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    choices = browser_choices(project)
    query, error = _query_or_default(request, project, choices["models"])
    if error:
        messages.error(request, error)
    ids = browse_items(project, query).values_list("id", flat=True)
    page = Paginator(ids, PAGE_SIZE).get_page(request.GET.get("page"))
    params = QueryDict(mutable=True)
    params.update(query.as_params())
    taxonomy = latest_published_taxonomy(project)
    context = {
        "project": project,
        "page": page,
        "rows": page_rows(project, query, list(page.object_list)),
        "query": query,
        "counts": browser_counts(project),
        "choices": choices,
        "filter_query": params.urlencode(),
        "sort_links": _sort_links(query),
        "saved_views": saved_views(project, request.user),
        "actions": _allowed_actions(request.user, project),
        "taxonomy_labels": list(taxonomy.labels.values_list("key", flat=True)) if taxonomy else [],
        "can_manage": can(request.user, project, "manage"),
        "can_review": can(request.user, project, "review"),
        "max_bulk": browser_services.MAX_BULK_ITEMS,
    }
    return render(request, "labeling/items/list.html", context)


def _selected_ids(request: HttpRequest, project: Project) -> list[int]:
    """The ticked items, or every item matching the filter when "all matching" was chosen."""
    if request.POST.get("scope") == "filter":
        query = parse_browser_query(QueryDict(request.POST.get("filter", "")))
        ids = list(browse_items(project, query).values_list("id", flat=True)[: browser_services.MAX_BULK_ITEMS + 1])
        return ids
    try:
        return [int(value) for value in request.POST.getlist("ids")]
    except ValueError as exc:
        raise ServiceError(gettext("Item ids must be numbers."), code="bad_ids") from exc


def _back(request: HttpRequest, project: Project) -> HttpResponse:
    url = reverse("labeling:items", args=[project.slug])
    filters = request.POST.get("filter", "")
    return redirect(f"{url}?{filters}" if filters else url)


@login_required
@require_POST
def bulk_action(request: HttpRequest, slug: str) -> HttpResponse:
    """Step 1 (no `confirmed`): the plan — what changes, what is refused and why. Step 2: do it, then back to
    the browser with a message (redirect after post)."""
    project = get_project_for(request.user, slug, "view")
    action = request.POST.get("action", "")
    needed = ACTION_PERMISSION.get(action)
    if needed is None:
        messages.error(request, gettext("Choose an action."))
        return _back(request, project)
    project = get_project_for(request.user, slug, needed)
    value = request.POST.get("value", "").strip()
    reason = request.POST.get("reason", "").strip()
    try:
        item_ids = _selected_ids(request, project)
        if request.POST.get("confirmed") != "1":
            plan = browser_services.plan_action(project=project, action=action, item_ids=item_ids, value=value)
            return render(
                request,
                "labeling/items/bulk_confirm.html",
                {
                    "project": project,
                    "plan": plan,
                    "action": action,
                    "value": value,
                    "value_display": _value_display(action, value),
                    "reason": reason,
                    "filter": request.POST.get("filter", ""),
                },
            )
        plan = browser_services.run_action(
            project=project, action=action, item_ids=item_ids, value=value, actor=request.user, reason=reason
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _back(request, project)
    messages.success(request, _done_message(plan, _value_display(action, value)))
    return _back(request, project)


def _value_display(action: str, value: str) -> str:
    return str(QUEUE_NAMES.get(value, value)) if action == "queue" else value


def _done_message(plan: browser_services.BulkPlan, value: str) -> str:
    n, refused = len(plan.changes), len(plan.refused)
    texts = {
        "queue": gettext("%(n)s items sent to the %(value)s queue; %(refused)s left as they were."),
        "split": gettext("%(n)s items now in %(value)s; %(refused)s kept their split."),
        "relabel": gettext("%(n)s items now have the gold label %(value)s (reviewed); %(refused)s unchanged."),
        "delete": gettext("%(n)s items deleted."),
    }
    return texts[plan.action] % {"n": n, "value": value, "refused": refused}


@login_required
@require_POST
def saved_view_save(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    query = request.POST.get("query", "")
    try:
        parse_browser_query(QueryDict(query))
        view = browser_services.save_view(
            project=project, user=request.user, name=request.POST.get("name", ""), query=query
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _redirect_to(request, project, query)
    messages.success(request, gettext("View “%(name)s” saved.") % {"name": view.name})
    return _redirect_to(request, project, view.query)


@login_required
@require_POST
def saved_view_delete(request: HttpRequest, slug: str, view_id: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    try:
        browser_services.delete_view(project=project, user=request.user, view_id=view_id)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, gettext("Saved view deleted."))
    return redirect("labeling:items", slug=project.slug)


def _redirect_to(request: HttpRequest, project: Project, query: str) -> HttpResponse:
    base = reverse("labeling:items", args=[project.slug])
    url = f"{base}?{query}" if query else base
    if not url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
        url = base
    return redirect(url)
