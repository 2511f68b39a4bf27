from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ANNOTATOR = "annotator", _("Annotator")
    REVIEWER = "reviewer", _("Reviewer")


def default_max_text_chars() -> int:
    """New projects take the deployment's MAX_TEXT_CHARS (2,000 unless set in the environment)."""
    return int(settings.MAX_TEXT_CHARS)


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True, allow_unicode=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    language = models.CharField(max_length=16, default="zh-hans")
    # Raw (unmasked) text is kept only when the owner opts in: PII stays out by default.
    keep_raw_text = models.BooleanField(default=False)
    # PII in ids, metadata and session ids: masked by the text patterns, or the whole value replaced by a keyed
    # hash (keeps equal ids equal). See labeling.pii.protect_value.
    pii_field_mode = models.CharField(
        _("PII in ids and metadata"),
        max_length=8,
        choices=[("mask", _("Mask (user-<PHONE>)")), ("hash", _("Hash the whole value"))],
        default="mask",
    )
    max_text_chars = models.PositiveIntegerField(default=default_max_text_chars)
    # Annotation overlap: k annotators per item, and a share of items that always get k >= 2.
    overlap_k = models.PositiveSmallIntegerField(default=1)
    agreement_share = models.FloatField(default=0.10)
    agreement_threshold = models.FloatField(default=0.8)
    show_model_suggestion = models.BooleanField(default=True)
    # Abstention: the owner's target (precision on answered texts, or coverage).
    abstain_target_kind = models.CharField(max_length=16, default="precision")
    abstain_target = models.FloatField(default=0.9)
    retrain_every_n_gold = models.PositiveIntegerField(default=50)
    # Monitoring alerts (drift, accuracy estimate) are POSTed here as JSON; http(s) only (docs/OPERATIONS.md).
    alert_webhook_url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user", "role"], name="uniq_membership_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} @ {self.project.slug}"


class ApiToken(models.Model):
    """A project-scoped token for predict clients. Only a sha256 of the secret is stored."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    # The token is vouched for by its creator (labeling/authentication.py): deleting the person ends it.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Invitation(models.Model):
    """A one-time link that lets a new person set a password and join a project with a role.
    Only a sha256 of the link's secret is stored."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
