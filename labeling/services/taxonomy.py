"""Writes for taxonomy versions and labels."""

from __future__ import annotations

from labeling.models import Label, Project, TaxonomyVersion

FALLBACK_KEY = "其他"


def create_initial_draft(project: Project) -> TaxonomyVersion:
    draft = TaxonomyVersion.objects.create(project=project, number=1)
    Label.objects.create(
        taxonomy=draft,
        key=FALLBACK_KEY,
        name=FALLBACK_KEY,
        definition="Out of scope or uncertain: the text fits no other scene.",
        is_fallback=True,
        hotkey="0",
        order=999,
    )
    return draft
