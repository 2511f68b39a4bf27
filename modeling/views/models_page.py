"""The model page: metrics and plots of a version, runs with live progress, train / cancel / publish /
roll back / archive. Thin: permissions via labeling.permissions, work via modeling services."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from labeling.permissions import can, get_project_for
from labeling.selectors.training_data import gold_split_counts
from modeling.engine.routes.catalogue import describe_routes
from modeling.models import DEFAULT_ROUTE, CascadeSettings
from modeling.selectors import aliases as alias_selectors
from modeling.selectors import models as selectors
from modeling.selectors.confusion import compare_versions, confusion_view, eval_split
from modeling.selectors.model_health import version_warnings
from modeling.services import aliases, cascade, publish_gate, training, versions
from modeling.services.item_predictions import ensure_split_predictions, request_item_scoring
from sceneclf_site.api_errors import ServiceError


def _plots(split_metrics: dict[str, Any] | None) -> dict[str, str]:
    """Server-rendered SVGs for one split's metric dict; a plot whose data is missing is left out."""
    from modeling.engine.evaluation import plots

    if not split_metrics:
        return {}
    out: dict[str, str] = {}
    calibration = split_metrics.get("calibration") or {}
    if calibration.get("reliability"):
        out["reliability"] = plots.reliability_diagram(
            calibration["reliability"], calibration.get("reliability_before")
        )
    if split_metrics.get("risk_coverage"):
        out["risk_coverage"] = plots.risk_coverage_plot(split_metrics["risk_coverage"], split_metrics.get("abstention"))
    return out


def _context(request: HttpRequest, project: Any) -> dict[str, Any]:
    training.sweep_stale_runs(project=project)  # a dead worker shows up as a failed run on page load
    runs = list(selectors.run_list(project, limit=20))
    return {
        "project": project,
        "runs": runs,
        "any_active": any(run.is_active for run in runs),
        "versions": list(selectors.version_list(project)),
        "published": selectors.published_version(project),
        "can_manage": can(request.user, project, "manage"),
        "can_roll_back": selectors.can_roll_back(project),
        "routes": describe_routes(),
        "gold_splits": gold_split_counts(project),
        "gate": publish_gate.gate_for(project),
        "cascade": cascade.cascade_settings_for(project),
        "recheck_versions": selectors.version_list(project).filter(route__in=cascade.RECHECK_ROUTES),
        "combine_rules": CascadeSettings.Combine.choices,
        "aliases": alias_selectors.alias_map(project),
        "release_rule": aliases.release_rule_for(project),
        "events": list(alias_selectors.version_events(project, limit=30)),
    }


@login_required
def model_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    context = _context(request, project)
    shown = context["published"] or (context["versions"][0] if context["versions"] else None)
    context.update(_version_context(shown))
    return render(request, "modeling/model_page.html", context)


@login_required
def version_page(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    context = _context(request, project)
    try:
        version = selectors.version_get(project, number)
    except ServiceError as exc:
        raise Http404(exc.message) from exc
    context.update(_version_context(version))
    return render(request, "modeling/model_page.html", context)


def _version_context(version: Any) -> dict[str, Any]:
    if version is None:
        return {"shown": None}
    metrics = version.metrics or {}
    split = eval_split(metrics)
    split_metrics = metrics.get(split) or {}
    return {
        "confusion_view": confusion_view(split_metrics.get("confusion") or {}),
        "shown": version,
        "split": split,
        "m": split_metrics,
        "val_m": metrics.get("val") or {},
        "per_class": sorted((split_metrics.get("per_class") or {}).items()),
        "warnings": version_warnings(version),
        "plots": _plots(split_metrics),
    }


@login_required
def runs_partial(request: HttpRequest, slug: str) -> HttpResponse:
    """The runs table alone: htmx polls it every 2 s while a run is active."""
    project = get_project_for(request.user, slug, "view")
    return render(request, "modeling/_runs.html", _context(request, project))


def _act(request: HttpRequest, slug: str, action: Any, success: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    try:
        result = action(project)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success.format(result=result))
    return redirect("modeling:model_page", slug=project.slug)


@login_required
@require_POST
def train(request: HttpRequest, slug: str) -> HttpResponse:
    route = request.POST.get("route", DEFAULT_ROUTE)
    try:
        params = _form_params(request.POST.get("params", ""))
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("modeling:model_page", slug=slug)
    if request.POST.get("backbone", "").strip():
        params["backbone"] = request.POST["backbone"].strip()
    auto_publish = request.POST.get("auto_publish") == "on"
    return _act(
        request,
        slug,
        lambda p: training.start_training_run(
            project=p, user=request.user, route=route, params=params, auto_publish=auto_publish
        ),
        gettext("Training run #{result.id} queued."),
    )


def _form_params(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(gettext("Parameters are not valid JSON: %(exc)s") % {"exc": exc}) from exc
    if not isinstance(params, dict):
        raise ValueError(gettext("Parameters must be a JSON object."))
    return params


@login_required
@require_POST
def extract(request: HttpRequest, slug: str) -> HttpResponse:
    backbone = request.POST.get("backbone", "").strip() or None
    return _act(
        request,
        slug,
        lambda p: training.start_feature_extraction(project=p, user=request.user, backbone=backbone),
        gettext("Feature extraction run #{result.id} queued."),
    )


@login_required
@require_POST
def cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    return _act(
        request,
        slug,
        lambda p: training.cancel_training_run(run=selectors.run_get(p, run_id)),
        gettext("Cancel requested for run #{result.id}."),
    )


@login_required
@require_POST
def publish(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    return _act(
        request,
        slug,
        lambda p: versions.publish_model_version(version=selectors.version_get(p, number), user=request.user),
        gettext("Model v{result.number} is now the champion."),
    )


@login_required
@require_POST
def rollback(request: HttpRequest, slug: str) -> HttpResponse:
    return _act(
        request,
        slug,
        lambda p: versions.rollback_model(project=p, user=request.user),
        gettext("Rolled back: model v{result.number} is the champion again."),
    )


@login_required
@require_POST
def set_alias(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    def save(project: Any) -> Any:
        share = _optional_share(request.POST.get("share", ""))
        return aliases.set_alias(
            version=selectors.version_get(project, number),
            alias=request.POST.get("alias", ""),
            user=request.user,
            share=share,
            reason=request.POST.get("reason", "")[:500],
        )

    return _act(request, slug, save, gettext("Model v{result.number} now holds the alias."))


@login_required
@require_POST
def remove_alias(request: HttpRequest, slug: str) -> HttpResponse:
    return _act(
        request,
        slug,
        lambda p: aliases.remove_alias(
            project=p,
            alias=request.POST.get("alias", ""),
            user=request.user,
            reason=request.POST.get("reason", "")[:500],
        ),
        gettext("Model v{result.number} no longer holds the alias."),
    )


@login_required
@require_POST
def challenger_share(request: HttpRequest, slug: str) -> HttpResponse:
    def save(project: Any) -> Any:
        return aliases.set_challenger_share(
            project=project, share=_optional_share(request.POST.get("share", "")), user=request.user
        )

    return _act(request, slug, save, gettext("Challenger share saved."))


@login_required
@require_POST
def release_rule(request: HttpRequest, slug: str) -> HttpResponse:
    def save(project: Any) -> Any:
        try:
            values = {
                "auto_decide": request.POST.get("auto_decide") == "on",
                "min_labelled": int(request.POST.get("min_labelled", "")),
                "max_f1_drop": float(request.POST.get("max_f1_drop", "")),
                "max_abstain_increase": float(request.POST.get("max_abstain_increase", "")),
                "max_latency_ratio": float(request.POST.get("max_latency_ratio", "")),
                "share_steps": [float(s) for s in request.POST.get("share_steps", "").replace(",", " ").split()],
                "retrain_alias": request.POST.get("retrain_alias", ""),
            }
        except ValueError as exc:
            raise ServiceError(gettext("Enter numbers in every field of the release rule.")) from exc
        return aliases.update_release_rule(project=project, **values)

    return _act(request, slug, save, gettext("Release rule saved."))


def _optional_share(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ServiceError(gettext("The share must be a number above 0 and at most 1.")) from exc


@login_required
@require_POST
def archive(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    return _act(
        request,
        slug,
        lambda p: versions.archive_model_version(version=selectors.version_get(p, number)),
        gettext("Model v{result.number} archived."),
    )


@login_required
@require_POST
def gate(request: HttpRequest, slug: str) -> HttpResponse:
    def save(project: Any) -> Any:
        try:
            values = {name: float(request.POST.get(name, "")) for name in ("max_f1_drop", "abstain_band")}
        except ValueError as exc:
            raise ServiceError(gettext("Enter numbers between 0 and 1.")) from exc
        return publish_gate.update_publish_gate(project=project, **values)

    return _act(request, slug, save, gettext("Publishing gate saved."))


@login_required
@require_POST
def cascade_settings(request: HttpRequest, slug: str) -> HttpResponse:
    def save(project: Any) -> Any:
        number = request.POST.get("recheck_version", "").strip()
        try:
            values = {
                "recheck_version_number": int(number) if number else None,
                "tau_recheck": float(request.POST.get("tau_recheck", "")),
                "max_share": float(request.POST.get("max_share", "")),
                "window_seconds": int(request.POST.get("window_seconds", "")),
            }
        except ValueError as exc:
            raise ServiceError(gettext("Enter numbers: thresholds and shares from 0 to 1, seconds whole.")) from exc
        return cascade.update_cascade_settings(
            project=project,
            user=request.user,
            enabled=request.POST.get("enabled") == "on",
            combine_rule=request.POST.get("combine_rule", ""),
            **values,
        )

    return _act(request, slug, save, gettext("Cascade settings saved."))


@login_required
@require_GET
def version_items(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """The items behind a confusion-matrix cell (gold + predicted) or a per-class row (gold): the version
    scores its evaluation split once, then the item browser opens filtered to them."""
    project = get_project_for(request.user, slug, "view")
    try:
        version = selectors.version_get(project, number)
    except ServiceError as exc:
        raise Http404(exc.message) from exc
    split = eval_split(version.metrics or {})
    try:
        ensure_split_predictions(version=version, split=split)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("modeling:version", slug=project.slug, number=number)
    params = QueryDict(mutable=True)
    params.update({"split": split, "model": version.ref, "sort": "confidence"})
    for name, target in (("gold", "label"), ("pred", "pred")):
        if request.GET.get(name):
            params[target] = request.GET[name]
    return redirect(f"{reverse('labeling:items', args=[project.slug])}?{params.urlencode()}")


@login_required
@require_POST
def score_items(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Score every item with this version, so the item browser can sort and filter all of them by its
    confidence and margin."""

    def queue(project: Any) -> int:
        request_item_scoring(version=selectors.version_get(project, number))
        return number

    return _act(
        request,
        slug,
        queue,
        gettext("Every item is being scored with v{result}; the item browser shows the results as they arrive."),
    )


def _version_or_none(project: Any, raw: str | None) -> Any:
    try:
        return selectors.version_get(project, int(raw)) if raw else None
    except (ValueError, ServiceError):
        return None


@login_required
@require_GET
def compare_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Two versions side by side: summary metrics, per class, and the confusions that changed."""
    project = get_project_for(request.user, slug, "view")
    all_versions = list(selectors.version_list(project))
    a = _version_or_none(project, request.GET.get("a"))
    b = _version_or_none(project, request.GET.get("b"))
    if b is None and all_versions:
        b = all_versions[0]
    if a is None and len(all_versions) > 1:
        a = selectors.published_version(project)
        if a is None or (b is not None and a.pk == b.pk):
            a = next((v for v in all_versions if b is None or v.pk != b.pk), None)
    comparison = compare_versions(a, b) if a is not None and b is not None else None
    context = {"project": project, "versions": all_versions, "a": a, "b": b, "comparison": comparison}
    return render(request, "modeling/compare.html", context)
