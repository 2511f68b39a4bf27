from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .projects import Project

PUBLISHED_IS_IMMUTABLE = "Published taxonomy versions are immutable; edit a new draft instead."


class TaxonomyVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PUBLISHED = "published", _("Published")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="taxonomy_versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="uniq_taxonomy_number"),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(status="draft"), name="one_draft_taxonomy_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} v{self.number} ({self.status})"

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED

    def save(self, *args, **kwargs) -> None:
        # Last line of defence behind the services: a stored published version never changes.
        if self.pk and TaxonomyVersion.objects.filter(pk=self.pk, status=self.Status.PUBLISHED).exists():
            raise ValidationError(PUBLISHED_IS_IMMUTABLE)
        super().save(*args, **kwargs)


class Label(models.Model):
    taxonomy = models.ForeignKey(TaxonomyVersion, on_delete=models.CASCADE, related_name="labels")
    key = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    definition = models.TextField(blank=True)
    decision_rules = models.TextField(blank=True)
    examples = models.JSONField(default=list, blank=True)
    counter_examples = models.JSONField(default=list, blank=True)
    edge_cases = models.JSONField(default=list, blank=True)
    hotkey = models.CharField(max_length=1, blank=True)
    order = models.PositiveIntegerField(default=0)
    is_fallback = models.BooleanField(default=False)

    class Meta:
        ordering = ["taxonomy", "order", "key"]
        constraints = [
            models.UniqueConstraint(fields=["taxonomy", "key"], name="uniq_label_key"),
            models.UniqueConstraint(
                fields=["taxonomy"], condition=models.Q(is_fallback=True), name="one_fallback_per_taxonomy"
            ),
        ]

    def __str__(self) -> str:
        return self.key

    def _refuse_if_published(self) -> None:
        if TaxonomyVersion.objects.filter(pk=self.taxonomy_id, status=TaxonomyVersion.Status.PUBLISHED).exists():
            raise ValidationError(PUBLISHED_IS_IMMUTABLE)

    def save(self, *args, **kwargs) -> None:
        self._refuse_if_published()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._refuse_if_published()
        return super().delete(*args, **kwargs)
