from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from labeling.models import Project, TaxonomyVersion

DEFAULT_ROUTE = "probe"


def validate_route(value: str) -> None:
    """A route is any name in the engine's registry (modeling.engine.routes), not a fixed list."""
    from modeling.engine.routes import route_names

    if value not in route_names():
        raise ValidationError(
            _("Unknown route %(value)s; choose one of %(routes)s."),
            params={"value": value, "routes": ", ".join(route_names())},
        )


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        # Committed, but its task is not on the broker yet (or the broker was down): re-sent by beat.
        WAITING = "waiting", _("Waiting for the queue")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    route = models.CharField(max_length=32, default=DEFAULT_ROUTE, validators=[validate_route])
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=64, blank=True)
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)  # of the current stage, from the engine's progress
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    timings = models.JSONField(default=dict, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    cancel_requested = models.BooleanField(default=False)
    trigger = models.CharField(max_length=32, default="manual")  # manual | auto_retrain | cli
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one waiting/queued/running run per project: two triggers racing cannot both start one.
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(status__in=["waiting", "queued", "running"]),
                name="one_active_run_per_project",
            ),
        ]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES


ACTIVE_RUN_STATUSES = (TrainingRun.Status.WAITING, TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", _("Candidate")
        PUBLISHED = "published", _("Published")
        ARCHIVED = "archived", _("Archived")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    number = models.PositiveIntegerField()
    route = models.CharField(max_length=32, validators=[validate_route])
    backbone_name = models.CharField(max_length=200, blank=True)
    backbone_fingerprint = models.CharField(max_length=64, blank=True)
    taxonomy = models.ForeignKey(TaxonomyVersion, on_delete=models.RESTRICT, related_name="model_versions")
    label_keys = models.JSONField(default=list)  # class order of the head's outputs
    # [[item_id, label_key], ...]: exactly what the model was trained on.
    training_snapshot = models.JSONField(default=list, blank=True)
    artifacts_dir = models.CharField(max_length=500)
    manifest = models.JSONField(default=dict, blank=True)  # {"files": {name: sha256}, ...}
    metrics = models.JSONField(default=dict, blank=True)
    # The automatic-publish decision: {"passed", "reason", "val_set", "candidate", "current", ...}; empty when
    # the version was not offered for automatic publishing.
    gate = models.JSONField(default=dict, blank=True)
    temperature = models.FloatField(default=1.0)
    threshold = models.FloatField(default=0.0)
    class_thresholds = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="uniq_model_version_number"),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(status="published"), name="one_published_model_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} model v{self.number} ({self.status})"

    @property
    def ref(self) -> str:
        return f"{self.project.slug}@v{self.number}"


class PublishGate(models.Model):
    """The owner's rule for automatic publishing: a candidate replaces the published version only if, on the
    candidate's validation items, its macro-F1 is at most `max_f1_drop` below the current version's and its
    abstain rate differs from the current one by at most `abstain_band`."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="publish_gate")
    max_f1_drop = models.FloatField(default=0.0)
    abstain_band = models.FloatField(default=0.05)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project.slug} gate (F1 drop <= {self.max_f1_drop}, abstain band {self.abstain_band})"


# --- Active learning ----------------------------------------------------------------------------


class ActiveLearningSettings(models.Model):
    """The owner's active-learning choices for a project, and the bookkeeping of automatic triggers."""

    class Strategy(models.TextChoices):
        MARGIN_DIVERSE = "margin_diverse", _("Margin + diversity (default)")
        MARGIN = "margin", _("Margin")
        ENTROPY = "entropy", _("Entropy")
        LEAST_CONFIDENCE = "least_confidence", _("Least confidence")
        RANDOM = "random", _("Random (control)")

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="active_learning")
    strategy = models.CharField(max_length=32, choices=Strategy.choices, default=Strategy.MARGIN_DIVERSE)
    batch_size = models.PositiveIntegerField(default=50)
    auto_retrain = models.BooleanField(default=True)
    # Highest item id seen by the last scoring: the beat task re-scores only when newer items arrived.
    last_scored_item_id = models.BigIntegerField(default=0)
    # A fixed sample of pool items on which successive models' predictions are compared (stopping signal).
    stop_set_item_ids = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project.slug} AL ({self.strategy}, batch {self.batch_size})"


class ActiveLearningRound(models.Model):
    """One scoring of the unlabelled pool: which model and strategy chose which batch."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="active_learning_rounds")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="active_learning_rounds"
    )
    strategy = models.CharField(max_length=32)  # the strategy actually used ("cold_start" without a model)
    trigger = models.CharField(max_length=32, default="manual")  # manual | after_training | beat
    batch_size = models.PositiveIntegerField()
    pool_size = models.PositiveIntegerField()
    gold_count = models.PositiveIntegerField()
    batch_item_ids = models.JSONField(default=list, blank=True)
    # Predicted label per stop-set item (same order as ActiveLearningSettings.stop_set_item_ids).
    stop_set_predictions = models.JSONField(default=list, blank=True)
    # Agreement with the previous round that used a different model version; null when not comparable.
    agreement = models.FloatField(null=True, blank=True)
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class CascadeSettings(models.Model):
    """The cascade at predict time: texts the published version is unsure of (calibrated top probability
    under ``tau_recheck``) are re-scored by ``recheck_version``, at most ``max_share`` of the texts a process
    saw in the last ``window_seconds``, and the two answers are combined by ``combine_rule``."""

    class Combine(models.TextChoices):
        PRODUCT = "product", _("Product of the two distributions")
        RECHECK_ONLY = "recheck_only", _("The re-check's answer alone")
        MORE_CONFIDENT = "more_confident", _("Whichever model is more confident")

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="cascade_settings")
    enabled = models.BooleanField(default=False)
    recheck_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tau_recheck = models.FloatField(default=0.8)
    max_share = models.FloatField(default=0.2)
    window_seconds = models.PositiveIntegerField(default=60)
    combine_rule = models.CharField(max_length=32, choices=Combine.choices, default=Combine.PRODUCT)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"cascade of {self.project.slug} ({'on' if self.enabled else 'off'})"
