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


class Alias(models.TextChoices):
    CHAMPION = "champion", _("Champion")
    CHALLENGER = "challenger", _("Challenger")
    SHADOW = "shadow", _("Shadow")


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", _("Candidate")
        # The version whose status is published is the champion: it serves every request that the canary
        # does not send to the challenger.
        PUBLISHED = "published", _("Champion")
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
    # challenger or shadow (modeling.services.aliases); the champion is the published version.
    alias = models.CharField(max_length=16, choices=Alias.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="uniq_model_version_number"),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(status="published"), name="one_published_model_per_project"
            ),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(alias="challenger"), name="one_challenger_per_project"
            ),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(alias="shadow"), name="one_shadow_per_project"
            ),
            models.CheckConstraint(
                condition=models.Q(alias="") | ~models.Q(status="published"), name="champion_holds_no_other_alias"
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


class ReleaseRule(models.Model):
    """The owner's rule for versions in production. The challenger serves `challenger_share` of the traffic
    (sticky by session id, hashed with `salt`); once it has `min_labelled` labelled predictions since its last
    step, it is compared with the champion on the same window: worse macro-F1 (by more than `max_f1_drop`),
    a higher abstain rate (by more than `max_abstain_increase`) or a slower latency p99 (more than
    `max_latency_ratio` times the champion's) rolls it back, otherwise its share moves to the next of
    `share_steps` and past the last step it becomes the champion. `retrain_alias` is where a version trained
    by the automatic retrain goes."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="release_rule")
    challenger_share = models.FloatField(default=0.0)
    share_steps = models.JSONField(default=list)
    auto_decide = models.BooleanField(default=True)
    min_labelled = models.PositiveIntegerField(default=30)
    max_f1_drop = models.FloatField(default=0.02)
    max_abstain_increase = models.FloatField(default=0.05)
    max_latency_ratio = models.FloatField(default=2.0)
    retrain_alias = models.CharField(
        max_length=16, choices=[(a.value, a.label) for a in (Alias.CHALLENGER, Alias.SHADOW)], default="challenger"
    )
    salt = models.CharField(max_length=32)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project.slug} release rule (challenger share {self.challenger_share:.0%})"


class VersionEvent(models.Model):
    """One entry of a version's history in production: an alias set or removed, a share change, a promotion,
    a rollback; who (a user) or which rule did it, why, and the figures the rule compared."""

    class Kind(models.TextChoices):
        ALIAS_SET = "alias_set", _("Alias set")
        ALIAS_REMOVED = "alias_removed", _("Alias removed")
        SHARE_CHANGED = "share_changed", _("Share changed")
        PROMOTED = "promoted", _("Promoted")
        ROLLED_BACK = "rolled_back", _("Rolled back")
        KEPT_CANDIDATE = "kept_candidate", _("Kept as candidate")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="version_events")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    alias = models.CharField(max_length=16, blank=True)
    share = models.FloatField(null=True, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    rule = models.CharField(max_length=32, blank=True)  # release_rule | auto_retrain | "" (a person)
    reason = models.TextField(blank=True)
    figures = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"])]


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
