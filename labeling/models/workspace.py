"""The labeling workspace: who works on which item (assignment slots), what each annotator said, skips,
model suggestions handed over by modeling, workspace settings and stored agreement reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .items import Item
from .projects import Project
from .taxonomy import TaxonomyVersion


class WorkspaceSettings(models.Model):
    """Owner settings of the workspace that are not on Project (one row per project, created lazily)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="workspace_settings")
    # An abandoned assignment frees its slot after this many minutes.
    assignment_ttl_minutes = models.PositiveIntegerField(default=30)
    # For k >= 3: accept a strict majority as gold without adjudication.
    accept_majority = models.BooleanField(default=False)
    # Recompute agreement after this many new annotations.
    agreement_batch_size = models.PositiveIntegerField(default=20)
    # Target shares for items that get their split when they first get gold (the owner's last split).
    split_train = models.FloatField(default=0.70)
    split_val = models.FloatField(default=0.15)
    split_test = models.FloatField(default=0.15)
    # Share of an annotator's items that are check items (gold items with a known answer), unannounced.
    check_item_rate = models.FloatField(default=0.05)


class Assignment(models.Model):
    """One of the k annotation slots of an item. The unique (item, slot) pair is what stops two annotators
    from taking the same slot, whatever the timing."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        DONE = "done", _("Done")

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    slot = models.PositiveSmallIntegerField()
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "slot"], name="uniq_assignment_item_slot")]
        indexes = [models.Index(fields=["annotator", "status"])]


class Annotation(models.Model):
    """What one annotator said about one item, under one taxonomy version."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotations")
    label_key = models.CharField(max_length=64)
    taxonomy = models.ForeignKey(TaxonomyVersion, on_delete=models.RESTRICT, related_name="annotations")
    time_ms = models.PositiveIntegerField(help_text="Display-to-submit time measured by the client, capped.")
    client_key = models.CharField(
        max_length=64, blank=True, default="", help_text="Idempotency key sent by the client; a retry reuses it."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="uniq_annotation_item_annotator"),
            models.UniqueConstraint(
                fields=["annotator", "client_key"],
                condition=~models.Q(client_key=""),
                name="uniq_annotation_client_key",
            ),
        ]


class Skip(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="skips")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skips")
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="uniq_skip_item_annotator")]


# model_ref of suggestions that the zero-shot model of a taxonomy version wrote (e.g. "zero-shot:t3").
ZERO_SHOT_REF_PREFIX = "zero-shot"


class ItemSuggestion(models.Model):
    """A model's suggestion for an item, written by modeling through `labeling.services.workspace`."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="suggestion")
    label_key = models.CharField(max_length=64)
    confidence = models.FloatField()
    topk = models.JSONField(default=list, blank=True)  # [{"label": k, "probability": p}]
    model_ref = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    @property
    def is_zero_shot(self) -> bool:
        """From the taxonomy alone (before the first trained model), not from a model trained on gold labels."""
        return self.model_ref.startswith(ZERO_SHOT_REF_PREFIX)


# Below this many items with two or more annotations, agreement figures are shown with a warning.
MIN_OVERLAP_ITEMS = 30


class AgreementReport(models.Model):
    """Inter-annotator agreement of one taxonomy version at one moment (computed by a Celery task)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_reports")
    taxonomy = models.ForeignKey(TaxonomyVersion, on_delete=models.CASCADE, related_name="agreement_reports")
    created_at = models.DateTimeField(auto_now_add=True)
    # Project-wide annotation count when computed: the next batch is counted from here.
    annotation_count = models.PositiveIntegerField(default=0)
    n_items = models.PositiveIntegerField(default=0)
    n_annotators = models.PositiveIntegerField(default=0)
    fleiss_kappa = models.FloatField(null=True, blank=True)
    krippendorff_alpha = models.FloatField(null=True, blank=True)
    # Bootstrap over items (seeded): {"low", "high", "level", "n_boot", "seed"}; empty when α is undefined.
    alpha_ci = models.JSONField(default=dict, blank=True)
    # [{"a": username, "b": username, "n": items in common, "kappa": float|None}]
    pairs = models.JSONField(default=list, blank=True)
    # [{"label", "fleiss_kappa", "krippendorff_alpha", "mean_cohen_kappa", "n_items", "flagged"}]
    per_label = models.JSONField(default=list, blank=True)
    # {"labels": [...], "matrix": [[...]]}: label pairs given to the same item by two annotators.
    confusion = models.JSONField(default=dict, blank=True)
    # {label_key: [item ids where annotators disagreed and one said this label]}
    disagreements = models.JSONField(default=dict, blank=True)
    threshold = models.FloatField(default=0.8)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def too_few_items(self) -> bool:
        return self.n_items < MIN_OVERLAP_ITEMS

    @property
    def flagged_labels(self) -> list[str]:
        return [row["label"] for row in self.per_label if row.get("flagged")]


class CheckItem(models.Model):
    """A gold item an owner chose as a check item ("honeypot"): mixed into annotators' queues at the
    workspace's rate, scored against its gold label."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="check_items")
    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="check_item")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
