"""Reads for an import's report: rejected lines grouped by reason and label, and the held lines' state."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from labeling.models import ImportHeldLine, ImportJob

SAMPLE_LINES = 5
# Stored reasons are in the language of the import; a group reads in the viewer's language by its code.
REASON_TITLES = {
    "empty_line": _("Empty line."),
    "broken_json": _("Broken JSON."),
    "too_deep": _("JSON nested too deep."),
    "invalid_text": _("Invalid text (characters that cannot be stored)."),
    "not_object": _("Not a JSON object."),
    "broken_row": _("Broken CSV row."),
    "no_text": _("No 'text' field."),
    "field_type": _("A field of the wrong type ('text', 'label' or 'id')."),
    "no_taxonomy": _("A label, but no published taxonomy yet."),
    "unknown_label": _("Unknown label: not in the published taxonomy."),
    "text_too_long": _("Text over the project's length limit."),
    "empty_text": _("Empty text."),
}


@dataclass
class RejectionGroup:
    code: str
    label: str
    count: int
    example: str  # the reason of the group's first line
    lines: list[int] = field(default_factory=list)  # the first few line numbers
    held: dict[str, int] = field(default_factory=dict)  # unknown labels: held lines by status

    @property
    def title(self) -> str:
        return str(REASON_TITLES.get(self.code, self.example))

    @property
    def more(self) -> int:
        return self.count - len(self.lines)

    @property
    def held_display(self) -> list[tuple[str, int]]:
        return [(str(ImportHeldLine.Status(status).label), n) for status, n in sorted(self.held.items())]

    @property
    def waiting(self) -> int:
        return self.held.get(ImportHeldLine.Status.HELD, 0)


def rejection_groups(job: ImportJob) -> list[RejectionGroup]:
    """One group per (reason code, label), largest first: 2,000 lines of one unknown label are one row.
    Rejections stored before reasons had codes are grouped by their reason text."""
    groups: dict[tuple[str, str], RejectionGroup] = {}
    for rejection in job.rejections:
        key = (rejection.get("code") or rejection.get("reason", ""), rejection.get("label", ""))
        group = groups.get(key)
        if group is None:
            group = groups[key] = RejectionGroup(code=key[0], label=key[1], count=0, example=rejection["reason"])
        group.count += 1
        if len(group.lines) < SAMPLE_LINES:
            group.lines.append(rejection["line"])
    held = _held_by_label(job)
    for (code, label), group in groups.items():
        if code == "unknown_label":
            group.held = held.get(label, {})
    return sorted(groups.values(), key=lambda group: (-group.count, group.code, group.label))


def _held_by_label(job: ImportJob) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in ImportHeldLine.objects.filter(job=job).values("label", "status").annotate(n=Count("id")):
        counts[row["label"]][row["status"]] = row["n"]
    return counts


def held_counts(job: ImportJob) -> Counter[str]:
    """Held lines by status."""
    return Counter(dict(ImportHeldLine.objects.filter(job=job).values_list("status").annotate(n=Count("id"))))
