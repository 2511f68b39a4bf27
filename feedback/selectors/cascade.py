"""What the cascade's re-check did in production: how many answers it changed, and how often it was right.

The truth of a logged text is the gold label of the project's item with the same text hash or, without one,
the latest reviewer decision on such an item (abstained texts and downstream corrections reach reviewers as
items). A text counts as changed when the answer's top label differs from the published version's own top
label."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from feedback.models import PredictionLog
from labeling.models import GoldLabel, Project, ReviewTask

RECENT_LIMIT = 5000  # the newest re-checked predictions the figures are computed on


@dataclass(frozen=True)
class CascadeOutcomes:
    n_predictions: int
    n_rechecked: int
    n_changed: int
    n_with_truth: int  # re-checked texts whose truth is known
    right_before: int  # of those, the published version's top label was right
    right_after: int  # of those, the cascade's answer was right
    changed_with_truth: int
    changed_now_right: int  # changed, and the new answer is right
    changed_was_right: int  # changed, and the published version had been right

    @property
    def share_rechecked(self) -> float | None:
        return self.n_rechecked / self.n_predictions if self.n_predictions else None


def rechecked_logs(project: Project) -> QuerySet[PredictionLog]:
    return PredictionLog.objects.filter(project=project, stages__contains=[{"stage": "recheck"}])


def cascade_outcomes(project: Project) -> CascadeOutcomes:
    rows = list(rechecked_logs(project).values_list("text_hash", "topk", "stages")[:RECENT_LIMIT])
    truth = truth_by_text_hash(project, {text_hash for text_hash, _, _ in rows})
    counts = dict.fromkeys(("changed", "with_truth", "before", "after", "changed_truth", "now_right", "was_right"), 0)
    for text_hash, topk, stages in rows:
        before, after = stages[0]["label"], (topk[0]["label"] if topk else "")
        known = truth.get(text_hash)
        changed = before != after
        counts["changed"] += changed
        if known is None:
            continue
        counts["with_truth"] += 1
        counts["before"] += before == known
        counts["after"] += after == known
        if changed:
            counts["changed_truth"] += 1
            counts["now_right"] += after == known
            counts["was_right"] += before == known
    return CascadeOutcomes(
        n_predictions=PredictionLog.objects.filter(project=project).count(),
        n_rechecked=len(rows),
        n_changed=counts["changed"],
        n_with_truth=counts["with_truth"],
        right_before=counts["before"],
        right_after=counts["after"],
        changed_with_truth=counts["changed_truth"],
        changed_now_right=counts["now_right"],
        changed_was_right=counts["was_right"],
    )


def truth_by_text_hash(project: Project, hashes: set[str]) -> dict[str, str]:
    """Gold labels first; a text without gold takes the latest reviewer decision on an item with its hash."""
    truth: dict[str, str] = {}
    reviews = (
        ReviewTask.objects.filter(
            project=project,
            item__text_hash__in=hashes,
            status=ReviewTask.Status.RESOLVED,
            resolution__in=[ReviewTask.Resolution.CONFIRMED, ReviewTask.Resolution.CORRECTED],
        )
        .exclude(resolved_label="")
        .order_by("resolved_at")
        .values_list("item__text_hash", "resolved_label")
    )
    truth.update(reviews)
    gold = GoldLabel.objects.filter(item__project=project, item__text_hash__in=hashes, needs_recheck=False)
    truth.update(gold.values_list("item__text_hash", "label_key"))
    return truth
