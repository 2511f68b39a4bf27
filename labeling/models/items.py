from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .projects import Project
from .taxonomy import TaxonomyVersion


class Item(models.Model):
    class Split(models.TextChoices):
        UNASSIGNED = "", _("Unassigned")
        TRAIN = "train", _("Train")
        VAL = "val", _("Validation")
        TEST = "test", _("Test")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    text = models.TextField(help_text="Text as stored, after PII masking.")
    raw_text = models.TextField(blank=True, help_text="Unmasked text; only when the project opts in.")
    normalized_text = models.TextField()
    text_hash = models.CharField(max_length=64, help_text="sha256 of the normalised, masked text.")
    # sha256 of `near_duplicate_key`: near-duplicates share it, and the split keeps them on one side.
    group_key = models.CharField(max_length=64, blank=True, db_index=True)
    source = models.CharField(max_length=100, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    # Assigned once, when the item first gets gold, and never moved: validation and test stay fixed.
    split = models.CharField(max_length=8, choices=Split.choices, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # Filled by active learning; higher means "label me sooner".
    priority = models.FloatField(default=0.0, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "text_hash"], name="uniq_item_text_hash"),
        ]
        indexes = [
            models.Index(fields=["project", "split"]),
            models.Index(fields=["project", "created_at"]),
            models.Index(fields=["project", "source"]),
        ]

    def __str__(self) -> str:
        return self.text[:40]


class GoldLabel(models.Model):
    """The label training uses. One per item; `method` says how it was reached."""

    class Method(models.TextChoices):
        IMPORTED = "imported", _("Imported")
        SINGLE = "single", _("Single annotator")
        UNANIMOUS = "unanimous", _("Unanimous")
        MAJORITY = "majority", _("Majority")
        ADJUDICATED = "adjudicated", _("Adjudicated")
        REVIEW = "review", _("Review")
        # A reviewer accepted (or corrected) a correction sent by a downstream app through the feedback API.
        FEEDBACK = "feedback", _("Reviewed feedback")

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="gold")
    label_key = models.CharField(max_length=64)
    # RESTRICT: a version with gold labels cannot be deleted alone, but deleting the project removes both.
    taxonomy = models.ForeignKey(TaxonomyVersion, on_delete=models.RESTRICT, related_name="gold_labels")
    method = models.CharField(max_length=16, choices=Method.choices)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Set when a taxonomy change removed or split this label: training skips it until re-checked.
    needs_recheck = models.BooleanField(default=False)
    recheck_reason = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["label_key"])]


class ImportJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    file_path = models.CharField(max_length=500)
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=8)  # jsonl | csv
    # Asked for at upload, else detected; the stored upload is UTF-8 from then on.
    encoding = models.CharField(max_length=32, blank=True)
    # Dataset labels that mean the fallback (e.g. "other", "oos"), besides its own key and 其他.
    fallback_aliases = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total_lines = models.PositiveIntegerField(default=0)
    processed_lines = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    labeled_count = models.PositiveIntegerField(default=0)
    # Texts already in the project (or earlier in the file) whose gold differs from the line's label.
    conflict_count = models.PositiveIntegerField(default=0)
    # [{"line": 3, "reason": "...", "code": "unknown_label", "label": "..."}]; every rejected line is listed,
    # nothing dropped silently; pages group them by code and label.
    rejections = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    @property
    def progress(self) -> float:
        return self.processed_lines / self.total_lines if self.total_lines else 0.0


class ImportHeldLine(models.Model):
    """A line rejected for its unknown label, kept (masked like an item) until the owner decides: add the label
    to the taxonomy and run it again, import the text without a label, or reject it."""

    class Status(models.TextChoices):
        HELD = "held", _("Held")
        IMPORTED = "imported", _("Imported")
        UNLABELED = "unlabeled", _("Imported without label")
        REJECTED = "rejected", _("Rejected")

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="held_lines")
    line = models.PositiveIntegerField()
    label = models.CharField(max_length=64)
    text = models.TextField(help_text="PII-masked, as an item would store it.")
    external_id = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD)

    class Meta:
        ordering = ["line"]
        indexes = [models.Index(fields=["job", "status", "label"])]
