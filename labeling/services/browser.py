"""Writes of the item browser: saved views and the bulk actions (send to a queue, set split, relabel, delete).

Each bulk action has a `plan_*` twin that says, without writing, which items it would change and why the
others are left alone: the confirmation page shows that plan, and the action itself follows the same rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext

from labeling.models import GoldLabel, Item, ItemEvent, Project, ReviewTask, SavedView
from labeling.services.gold import require_published, set_gold, validate_label
from labeling.services.history import record_event
from labeling.services.review import create_review_task
from labeling.services.workspace import set_priorities
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

MAX_BULK_ITEMS = 5000
MAX_REASON = 2000
QUEUES = ("annotation", "review")
SETTABLE_SPLITS = (Item.Split.TRAIN.value, Item.Split.VAL.value, Item.Split.TEST.value)
ACTIONS = ("queue", "split", "relabel", "delete")


@dataclass
class BulkPlan:
    action: str
    changes: list[Item] = field(default_factory=list)  # items the action changes
    refused: list[tuple[Item, str]] = field(default_factory=list)  # (item, why it is left alone)


# --- saved views ------------------------------------------------------------------------------------


@transaction.atomic
def save_view(*, project: Project, user: Any, name: str, query: str) -> SavedView:
    """Create or replace the user's view of that name."""
    name = (name or "").strip()
    if not name:
        raise ServiceError(gettext("Give the view a name."), code="view_name")
    if len(name) > 80 or len(query) > 1000:
        raise ServiceError(gettext("The name or the filter is too long."), code="view_too_long")
    view, _ = SavedView.objects.update_or_create(project=project, user=user, name=name, defaults={"query": query})
    return view


@transaction.atomic
def delete_view(*, project: Project, user: Any, view_id: int) -> None:
    deleted, _ = SavedView.objects.filter(project=project, user=user, pk=view_id).delete()
    if not deleted:
        raise ServiceError(gettext("No such saved view."), code="no_view")


# --- plans ------------------------------------------------------------------------------------------


def _checked_items(project: Project, item_ids: list[int]) -> list[Item]:
    if not item_ids:
        raise ServiceError(gettext("Select at least one item."), code="no_items")
    if len(item_ids) > MAX_BULK_ITEMS:
        raise ServiceError(
            gettext("A bulk action takes at most %(max)s items; narrow the filter.") % {"max": MAX_BULK_ITEMS},
            code="too_many_items",
        )
    return list(Item.objects.filter(project=project, pk__in=item_ids).select_related("gold").order_by("id"))


def plan_queue(*, project: Project, item_ids: list[int], queue: str) -> BulkPlan:
    if queue not in QUEUES:
        raise ServiceError(gettext("Unknown queue '%(queue)s'.") % {"queue": queue}, code="bad_queue")
    plan = BulkPlan("queue")
    items = _checked_items(project, item_ids)
    if queue == "review":
        open_ids = set(
            ReviewTask.objects.filter(
                item__in=items, kind=ReviewTask.Kind.REQUESTED, status=ReviewTask.Status.OPEN
            ).values_list("item_id", flat=True)
        )
        for item in items:
            if item.pk in open_ids:
                plan.refused.append((item, gettext("already waits in the review queue")))
            else:
                plan.changes.append(item)
        return plan
    in_review = set(
        ReviewTask.objects.filter(item__in=items, status=ReviewTask.Status.OPEN).values_list("item_id", flat=True)
    )
    for item in items:
        if hasattr(item, "gold"):
            plan.refused.append((item, gettext("has a gold label: send it to the review queue instead")))
        elif item.pk in in_review:
            plan.refused.append((item, gettext("waits in the review queue, which annotators do not see")))
        else:
            plan.changes.append(item)
    return plan


def plan_split(*, project: Project, item_ids: list[int], split: str) -> BulkPlan:
    if split not in SETTABLE_SPLITS:
        raise ServiceError(gettext("Choose train, val or test."), code="bad_split")
    plan = BulkPlan("split")
    for item in _checked_items(project, item_ids):
        if item.split:
            plan.refused.append(
                (
                    item,
                    gettext("is in %(split)s already: a split never moves once assigned, so versions stay comparable")
                    % {"split": item.split},
                )
            )
        else:
            plan.changes.append(item)
    return plan


def plan_relabel(*, project: Project, item_ids: list[int], label_key: str) -> BulkPlan:
    taxonomy = require_published(project)
    validate_label(taxonomy, label_key)
    plan = BulkPlan("relabel")
    for item in _checked_items(project, item_ids):
        gold = getattr(item, "gold", None)
        if gold is not None and gold.label_key == label_key and not gold.needs_recheck:
            plan.refused.append((item, gettext("has this gold label already")))
        else:
            plan.changes.append(item)
    return plan


def plan_delete(*, project: Project, item_ids: list[int]) -> BulkPlan:
    return BulkPlan("delete", changes=_checked_items(project, item_ids))


def plan_action(*, project: Project, action: str, item_ids: list[int], value: str) -> BulkPlan:
    if action == "queue":
        return plan_queue(project=project, item_ids=item_ids, queue=value)
    if action == "split":
        return plan_split(project=project, item_ids=item_ids, split=value)
    if action == "relabel":
        return plan_relabel(project=project, item_ids=item_ids, label_key=value)
    if action == "delete":
        return plan_delete(project=project, item_ids=item_ids)
    raise ServiceError(gettext("Unknown bulk action '%(action)s'.") % {"action": action}, code="bad_action")


# --- actions ----------------------------------------------------------------------------------------


@transaction.atomic
def bulk_send_to_queue(*, project: Project, item_ids: list[int], queue: str, actor: Any) -> BulkPlan:
    """`review`: a review task per item (kind `requested`); `annotation`: the items go to the front of the
    annotators' queue (above every active-learning priority)."""
    plan = plan_queue(project=project, item_ids=item_ids, queue=queue)
    if queue == "review":
        for item in plan.changes:
            gold = getattr(item, "gold", None)
            create_review_task(
                project=project,
                item=item,
                kind=ReviewTask.Kind.REQUESTED,
                suggested_label=gold.label_key if gold else "",
                model_version_ref=f"browser:{getattr(actor, 'username', '')}",
            )
    elif plan.changes:
        top = Item.objects.filter(project=project).aggregate(top=Max("priority"))["top"] or 0.0
        # Keep the chosen items' own order among themselves, all ahead of the rest.
        n = len(plan.changes)
        set_priorities(project, {item.pk: top + 1.0 + (n - i) / n for i, item in enumerate(plan.changes)})
    return plan


@transaction.atomic
def bulk_set_split(*, project: Project, item_ids: list[int], split: str, actor: Any) -> BulkPlan:
    """Give items without a split this one (each recorded in its history); items with one keep it."""
    plan = plan_split(project=project, item_ids=item_ids, split=split)
    ids = [item.pk for item in plan.changes]
    Item.objects.filter(pk__in=ids, split="").update(split=split)
    for item in plan.changes:
        record_event(
            item=item, kind=ItemEvent.Kind.SPLIT_ASSIGNED, actor=actor, detail={"split": split, "by": "manual"}
        )
    return plan


@transaction.atomic
def bulk_relabel(*, project: Project, item_ids: list[int], label_key: str, actor: Any, reason: str) -> BulkPlan:
    """Set the gold label as a reviewed decision (method `review`, decided by the actor, with the reason in
    each item's history); replacing another gold label is recorded as an override."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(gettext("Say why these items get a new label."), code="relabel_reason")
    if len(reason) > MAX_REASON:
        raise ServiceError(gettext("Keep the reason under %(max)s characters.") % {"max": MAX_REASON})
    plan = plan_relabel(project=project, item_ids=item_ids, label_key=label_key)
    taxonomy = require_published(project)
    existing = set(GoldLabel.objects.filter(item__in=plan.changes).values_list("item_id", flat=True))
    for item in plan.changes:
        set_gold(
            item=item,
            label_key=label_key,
            taxonomy=taxonomy,
            method=GoldLabel.Method.REVIEW,
            event=ItemEvent.Kind.OVERRIDDEN if item.pk in existing else ItemEvent.Kind.REVIEWED,
            decided_by=actor,
            reason=reason,
            detail={"via": "item_browser", "bulk_size": len(plan.changes)},
        )
    return plan


@transaction.atomic
def bulk_delete(*, project: Project, item_ids: list[int], actor: Any) -> BulkPlan:
    """Delete the items with everything attached to them (annotations, gold, history)."""
    plan = plan_delete(project=project, item_ids=item_ids)
    Item.objects.filter(project=project, pk__in=[item.pk for item in plan.changes]).delete()
    # The items' history goes with them: the log keeps who deleted how many.
    logger.info("user %s deleted %s items of project %s", getattr(actor, "pk", None), len(plan.changes), project.slug)
    return plan


@transaction.atomic
def run_action(
    *, project: Project, action: str, item_ids: list[int], value: str, actor: Any, reason: str = ""
) -> BulkPlan:
    if action == "queue":
        return bulk_send_to_queue(project=project, item_ids=item_ids, queue=value, actor=actor)
    if action == "split":
        return bulk_set_split(project=project, item_ids=item_ids, split=value, actor=actor)
    if action == "relabel":
        return bulk_relabel(project=project, item_ids=item_ids, label_key=value, actor=actor, reason=reason)
    if action == "delete":
        return bulk_delete(project=project, item_ids=item_ids, actor=actor)
    raise ServiceError(gettext("Unknown bulk action '%(action)s'.") % {"action": action}, code="bad_action")
