"""Reads for the annotator workspace: which items an annotator may get, in which order, and their progress."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from labeling.models import (
    Annotation,
    Assignment,
    Item,
    Label,
    Project,
    ReviewTask,
    TaxonomyVersion,
    WorkspaceSettings,
)

# Keys the workspace and review pages use for themselves, with what they do there.
RESERVED_KEYS = {"s": "skip", "u": "undo", "?": "help", "/": "the label filter", "e": "the label's examples"}
AUTO_HOTKEYS = "123456789abcdfghijklmnopqrtvwxyz"
FALLBACK_HOTKEY = "0"


def workspace_settings(project: Project) -> WorkspaceSettings:
    """The saved settings, or the defaults (unsaved) when the owner never changed them."""
    return WorkspaceSettings.objects.filter(project=project).first() or WorkspaceSettings(project=project)


def stable_fraction(*parts: Any) -> float:
    """A number in [0, 1) that depends only on its inputs: deterministic sampling without stored state."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def in_agreement_sample(project: Project, text_hash: str) -> bool:
    return stable_fraction("agreement", project.pk, text_hash) < project.agreement_share


def target_k(project: Project, text_hash: str) -> int:
    """Annotations an item needs: the project's k, at least 2 for the agreement sample."""
    k = max(1, project.overlap_k)
    return max(k, 2) if in_agreement_sample(project, text_hash) else k


def occupied_slots(project: Project, now: datetime) -> dict[int, int]:
    """Per item: slots that are done or held by an unexpired assignment."""
    rows = (
        Assignment.objects.filter(item__project=project)
        .filter(Q(status=Assignment.Status.DONE) | Q(expires_at__gt=now))
        .values("item_id")
        .annotate(n=Count("id"))
    )
    return {row["item_id"]: row["n"] for row in rows}


def eligible_item_ids(project: Project, annotator: Any, now: datetime | None = None) -> list[int]:
    """Items this annotator may pull, best first: no gold yet, not labelled or skipped or held by them,
    a free slot left. Ordered by priority (active learning), then round-robin over sources with a stable
    hash inside each source, so an unprioritised queue is random but spread over where texts came from."""
    now = now or timezone.now()
    candidates = (
        Item.objects.filter(project=project, gold__isnull=True)
        .exclude(annotations__annotator=annotator)
        .exclude(skips__annotator=annotator)
        .exclude(assignments__annotator=annotator)
        # Texts waiting in the review queue (e.g. abstained predictions) are the reviewers' to decide.
        .exclude(review_tasks__status=ReviewTask.Status.OPEN)
        .values_list("id", "priority", "source", "text_hash")
    )
    occupied = occupied_slots(project, now)
    by_source: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for item_id, priority, source, text_hash in candidates:
        # k >= 1, so only items with a taken slot can be full: the hash for k is computed only for those.
        taken = occupied.get(item_id, 0)
        if taken and taken >= target_k(project, text_hash):
            continue
        # The text's sha256 already is a uniform, stable shuffle key: no extra hashing per item.
        by_source[source].append((priority, item_id, int(text_hash[:12] or "0", 16)))
    keyed: list[tuple[float, int, int, int]] = []
    for position, source in enumerate(sorted(by_source)):
        rows = sorted(by_source[source], key=lambda row: row[2])
        keyed.extend((-priority, rank, position, item_id) for rank, (priority, item_id, _) in enumerate(rows))
    keyed.sort()
    return [row[3] for row in keyed]


def active_assignment(project: Project, annotator: Any, now: datetime | None = None) -> Assignment | None:
    """The item an annotator is working on; the most recently (re)activated one first (undo re-activates)."""
    now = now or timezone.now()
    return (
        Assignment.objects.filter(
            item__project=project, annotator=annotator, status=Assignment.Status.ACTIVE, expires_at__gt=now
        )
        .select_related("item")
        .order_by("-expires_at", "-id")
        .first()
    )


@dataclass(frozen=True)
class Progress:
    total: int
    today: int
    remaining: int


def annotator_progress(project: Project, annotator: Any) -> Progress:
    mine = Annotation.objects.filter(item__project=project, annotator=annotator)
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Progress(
        total=mine.count(),
        today=mine.filter(created_at__gte=start_of_day).count(),
        # The item on screen is held by the annotator's assignment, so it is not eligible any more: still to do.
        remaining=len(eligible_item_ids(project, annotator)) + _held_items(project, annotator),
    )


def _held_items(project: Project, annotator: Any) -> int:
    return Assignment.objects.filter(
        item__project=project,
        item__gold__isnull=True,
        annotator=annotator,
        status=Assignment.Status.ACTIVE,
        expires_at__gt=timezone.now(),
    ).count()


@dataclass(frozen=True)
class WorkspaceLabel:
    key: str
    name: str
    hotkey: str
    definition: str
    decision_rules: str
    is_fallback: bool
    examples: list[str]
    counter_examples: list[str]
    edge_cases: list[str]
    # The taxonomy's own hotkey when it is a reserved key and `hotkey` replaces it (versions from before the rule).
    replaced_hotkey: str = ""

    @property
    def search_text(self) -> str:
        """What the label filter matches against: key, name and definition, lower-cased (no pinyin)."""
        return " ".join([self.key, self.name, self.definition]).lower()


def workspace_labels(taxonomy: TaxonomyVersion) -> list[WorkspaceLabel]:
    """The labels with their hotkeys: the taxonomy's own where set (and not reserved), 0 for a fallback without
    one, then 1-9 and letters. Reserved keys are refused when the taxonomy is edited; older versions may still
    hold one, and it is replaced here."""
    labels = list(Label.objects.filter(taxonomy=taxonomy).order_by("order", "key"))
    own = {label.pk: _own_hotkey(label) for label in labels}
    if FALLBACK_HOTKEY not in own.values():
        for label in labels:
            if label.is_fallback and not own[label.pk]:
                own[label.pk] = FALLBACK_HOTKEY
    free = iter(key for key in AUTO_HOTKEYS if key not in set(own.values()))
    result = []
    for label in labels:
        hotkey = own[label.pk]
        result.append(
            WorkspaceLabel(
                key=label.key,
                name=label.name,
                hotkey=hotkey or next(free, ""),
                definition=label.definition,
                decision_rules=label.decision_rules,
                is_fallback=label.is_fallback,
                examples=list(label.examples or []),
                counter_examples=list(label.counter_examples or []),
                edge_cases=list(label.edge_cases or []),
                replaced_hotkey=label.hotkey if label.hotkey and not own[label.pk] else "",
            )
        )
    return result


def _own_hotkey(label: Label) -> str:
    hotkey = (label.hotkey or "").lower()
    return hotkey if hotkey and hotkey not in RESERVED_KEYS else ""


def recent_annotations(project: Project, annotator: Any, limit: int = 5) -> list[Annotation]:
    return list(
        Annotation.objects.filter(item__project=project, annotator=annotator)
        .select_related("item")
        .order_by("-created_at", "-id")[:limit]
    )


def assignment_ttl(project: Project) -> timedelta:
    return timedelta(minutes=workspace_settings(project).assignment_ttl_minutes)
