"""The owner's active-learning page: strategy and batch size, the project's learning curve, queue sizes, the
stopping signal, and buttons to re-score the pool or run the label check. Thin: selectors read, services and
tasks act; members may view, only owners change anything."""

from __future__ import annotations

import io
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from labeling.permissions import can, get_project_for
from modeling.models import ActiveLearningSettings
from modeling.selectors import active_learning as selectors
from modeling.services.active_learning import update_al_settings
from sceneclf_site.api_errors import ServiceError


def learning_curve_svg(points: list[dict[str, Any]]) -> str:
    """Val macro-F1 against gold labels, as an inline SVG (server-side matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [p for p in points if p["macro_f1"] is not None]
    if not usable:
        return ""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([p["gold_labels"] for p in usable], [p["macro_f1"] for p in usable], marker="o")
    for p in usable:
        ax.annotate(
            f"v{p['version']}", (p["gold_labels"], p["macro_f1"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel("gold labels")
    ax.set_ylabel("val macro-F1")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


@login_required
def active_learning_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "view")
    curve = selectors.learning_curve(project)
    context = {
        "project": project,
        "settings": selectors.al_settings(project),
        "strategies": ActiveLearningSettings.Strategy.choices,
        "curve": curve,
        "curve_svg": learning_curve_svg(curve),
        "queues": selectors.queue_counts(project),
        "stop": selectors.stopping_signal(project),
        "rounds": selectors.recent_rounds(project),
        "gold_count": selectors.gold_count(project),
        "scoring_model": selectors.scoring_model(project),
        "can_manage": can(request.user, project, "manage"),
    }
    return render(request, "modeling/active_learning.html", context)


@login_required
@require_POST
def update_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project_for(request.user, slug, "manage")
    try:
        batch_size = int(request.POST.get("batch_size", ""))
    except ValueError:
        messages.error(request, _("The batch size must be a whole number."))
        return redirect("modeling:active_learning", slug=slug)
    try:
        update_al_settings(
            project=project,
            strategy=request.POST.get("strategy"),
            batch_size=batch_size,
            auto_retrain=request.POST.get("auto_retrain") == "on",
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Active-learning settings saved."))
    return redirect("modeling:active_learning", slug=slug)


@login_required
@require_POST
def rescore(request: HttpRequest, slug: str) -> HttpResponse:
    from modeling.tasks_al import score_pool_task

    project = get_project_for(request.user, slug, "manage")
    score_pool_task.delay(project.pk, "manual")
    messages.success(request, _("Re-scoring the unlabelled pool; the queue order updates when it finishes."))
    return redirect("modeling:active_learning", slug=slug)


@login_required
@require_POST
def label_check(request: HttpRequest, slug: str) -> HttpResponse:
    from modeling.tasks_al import label_check_task

    project = get_project_for(request.user, slug, "manage")
    try:
        label_check_task.delay(project.pk)
    except ServiceError as exc:  # eager mode (tests, no broker) raises inline
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Label check started: suspected errors and conflicts go to the review queue."))
    return redirect("modeling:active_learning", slug=slug)


# Appended to modeling/urls.py (owned by route 1) with one import and one `urlpatterns +=` line.
_P = "projects/<slug:slug>/active-learning"
urls = [
    path(f"{_P}/", active_learning_page, name="active_learning"),
    path(f"{_P}/settings/", update_settings, name="active_learning_settings"),
    path(f"{_P}/rescore/", rescore, name="active_learning_rescore"),
    path(f"{_P}/label-check/", label_check, name="active_learning_label_check"),
]
