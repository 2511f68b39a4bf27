"""What happened to an item, kept forever: annotations, gold changes, reviews, adjudications, re-checks,
imports and split assignments. Written only by labeling's services (append-only, never edited)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .items import Item
from .projects import Project


class ItemEvent(models.Model):
    class Kind(models.TextChoices):
        ANNOTATED = "annotated", _("Annotated")
        ANNOTATION_UNDONE = "annotation_undone", _("Annotation undone")
        GOLD_DERIVED = "gold_derived", _("Gold from annotations")
        GOLD_REMOVED = "gold_removed", _("Gold taken back")
        IMPORTED = "imported", _("Gold imported")
        REVIEWED = "reviewed", _("Reviewed")
        REVIEW_CONFLICT = "review_conflict", _("Review disagrees with gold")
        IMPORT_CONFLICT = "import_conflict", _("Import disagrees with gold")
        OVERRIDDEN = "overridden", _("Gold overridden in review")
        ADJUDICATED = "adjudicated", _("Adjudicated")
        RECHECKED = "rechecked", _("Re-checked")
        SPLIT_ASSIGNED = "split_assigned", _("Split assigned")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="item_events")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # The item's gold label before the event, and the label the event puts forward (the annotation, the
    # proposal or the decision); `detail["gold_changed"]` says whether gold took it.
    label_before = models.CharField(max_length=64, blank=True)
    label_after = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["item", "created_at"]), models.Index(fields=["project", "kind"])]


class GoldConflict(models.Model):
    """A review decision that differs from the item's gold label: it waits for adjudication instead of
    replacing gold."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RESOLVED = "resolved", _("Resolved")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gold_conflicts")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="gold_conflicts")
    gold_label = models.CharField(max_length=64, help_text="The gold label when the conflict was raised.")
    proposed_label = models.CharField(max_length=64)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_task = models.ForeignKey(
        "labeling.ReviewTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="gold_conflicts"
    )
    comment = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    resolved_label = models.CharField(max_length=64, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["project", "status"])]
