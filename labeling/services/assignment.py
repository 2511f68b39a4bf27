"""Handing out annotation slots. Each item has k slots (`Assignment` rows, unique per (item, slot)).
On PostgreSQL a claimer locks the candidate items with `SELECT ... FOR UPDATE SKIP LOCKED`, so two
annotators pulling at the same moment take different items without waiting; on SQLite, which serialises
writers, the unique constraint (or a busy database) makes the loser retry."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from labeling.models import Annotation, Assignment, Item, Project, Skip
from labeling.selectors.workspace import active_assignment, assignment_ttl, eligible_item_ids, target_k
from labeling.services.check_items import check_item_due, claim_check_item

logger = logging.getLogger(__name__)

LOCK_BATCH = 20  # candidates locked per attempt: enough to skip past items other annotators hold
MAX_ATTEMPTS = 8


def claim_next(project: Project, annotator: Any) -> Assignment | None:
    """The annotator's current item, or a newly claimed slot on the best eligible item (now and then, at the
    workspace's rate, a check item instead); None when the queue holds nothing for them."""
    current = active_assignment(project, annotator)
    if current is not None:
        return current
    if check_item_due(project, annotator) and eligible_item_ids(project, annotator):
        # Only while real work is left: a queue of nothing but check items would give them away.
        check = claim_check_item(project, annotator)
        if check is not None:
            return check
    for attempt in range(MAX_ATTEMPTS):
        try:
            assignment, contended = _claim_from_queue(project, annotator)
        except (IntegrityError, DatabaseError) as exc:
            # Another annotator won the same slot (SQLite) or the database was busy: look again.
            logger.info("assignment claim retry %s in project %s: %s", attempt + 1, project.pk, type(exc).__name__)
            contended = True
            assignment = None
        if assignment is not None or not contended:
            return assignment
        # Every candidate left was locked by another claimer for a moment: it may still have a free slot.
        time.sleep(random.uniform(0.005, 0.03) * (attempt + 1))
    return None


def claim_item(project: Project, annotator: Any, item: Item) -> Assignment | None:
    """Claim a slot on one given item (used when undoing a skip); None if it has no free slot."""
    with transaction.atomic():
        locked = _lock(Item.objects.filter(pk=item.pk, project=project))
        if not locked:
            return None
        return _claim_slot(project, annotator, locked[0])


def _lock(queryset: Any) -> list[Item]:
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True)
    return list(queryset.only("id", "text_hash", "project_id"))


def _claim_from_queue(project: Project, annotator: Any) -> tuple[Assignment | None, bool]:
    """(the claimed slot or None, whether some candidate was skipped because another claimer held it)."""
    candidates = eligible_item_ids(project, annotator)
    contended = False
    for start in range(0, len(candidates), LOCK_BATCH):
        batch = candidates[start : start + LOCK_BATCH]
        with transaction.atomic():
            locked = {item.pk: item for item in _lock(Item.objects.filter(pk__in=batch))}
            contended = contended or len(locked) < len(batch)
            for item_id in batch:
                if item_id in locked:
                    assignment = _claim_slot(project, annotator, locked[item_id])
                    if assignment is not None:
                        return assignment, contended
    return None, contended


def _claim_slot(project: Project, annotator: Any, item: Item) -> Assignment | None:
    """With the item locked (PostgreSQL) or inside a serialised write (SQLite): take the lowest free slot,
    or take over an expired one."""
    now = timezone.now()
    expires_at = now + assignment_ttl(project)
    if Annotation.objects.filter(item=item, annotator=annotator).exists():
        return None
    if Skip.objects.filter(item=item, annotator=annotator).exists():
        return None
    rows = list(Assignment.objects.filter(item=item))
    if any(row.annotator_id == annotator.pk for row in rows):
        return None
    k = target_k(project, item.text_hash)
    live = [row for row in rows if row.status == Assignment.Status.DONE or row.expires_at > now]
    if len(live) >= k:
        return None
    taken = {row.slot for row in rows}
    free = [slot for slot in range(k) if slot not in taken]
    if free:
        return Assignment.objects.create(item=item, slot=free[0], annotator=annotator, expires_at=expires_at)
    expired = next(row for row in rows if row not in live)
    # Conditional update: only if nobody took the expired slot over in the meantime.
    updated = Assignment.objects.filter(pk=expired.pk, annotator_id=expired.annotator_id, expires_at__lte=now).update(
        annotator=annotator, expires_at=expires_at, status=Assignment.Status.ACTIVE
    )
    if not updated:
        raise IntegrityError("expired slot was taken over concurrently")
    return Assignment.objects.get(pk=expired.pk)


def release(project: Project, annotator: Any, item: Item) -> None:
    """Give an active slot back (skip, or the annotator leaving the item)."""
    Assignment.objects.filter(item=item, annotator=annotator, status=Assignment.Status.ACTIVE).delete()
