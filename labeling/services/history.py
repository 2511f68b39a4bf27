"""The item history: one append per annotation, gold change, review, adjudication, re-check, import and split
assignment. Services call these inside their own transaction, so an event exists exactly when its change does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from labeling.models import Item, ItemEvent

MAX_REASON = 2000


def record_event(
    *,
    item: Item,
    kind: str,
    actor: Any | None = None,
    label_before: str = "",
    label_after: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> ItemEvent:
    return ItemEvent.objects.create(
        project_id=item.project_id,
        item=item,
        kind=kind,
        actor=_user_or_none(actor),
        label_before=label_before or "",
        label_after=label_after or "",
        reason=(reason or "")[:MAX_REASON],
        detail=detail or {},
    )


def record_events(events: Iterable[ItemEvent]) -> int:
    """Bulk append (imports, batch split assignment): unsaved ItemEvent rows built by the caller."""
    created = ItemEvent.objects.bulk_create(list(events), batch_size=1000)
    return len(created)


def _user_or_none(actor: Any | None) -> Any | None:
    # Anonymous users and API tokens are not rows of the user table.
    return actor if getattr(actor, "pk", None) is not None else None
