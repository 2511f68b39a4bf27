"""Reads for taxonomy versions and labels, including the diff between two versions."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext

from labeling.models import Label, Project, TaxonomyVersion
from labeling.taxonomy_io import LABEL_FIELDS, LabelSpec, build_document
from sceneclf_site.api_errors import NotFoundError


def list_versions(project: Project) -> QuerySet[TaxonomyVersion]:
    return TaxonomyVersion.objects.filter(project=project).order_by("-number")


def get_version(project: Project, number: int) -> TaxonomyVersion:
    version = TaxonomyVersion.objects.filter(project=project, number=number).first()
    if version is None:
        raise NotFoundError(gettext("Taxonomy version %(number)s does not exist in this project.") % {"number": number})
    return version


def latest_published(project: Project) -> TaxonomyVersion | None:
    return (
        TaxonomyVersion.objects.filter(project=project, status=TaxonomyVersion.Status.PUBLISHED)
        .order_by("-number")
        .first()
    )


def current_draft(project: Project) -> TaxonomyVersion | None:
    return TaxonomyVersion.objects.filter(project=project, status=TaxonomyVersion.Status.DRAFT).first()


def labels_of(version: TaxonomyVersion) -> QuerySet[Label]:
    return Label.objects.filter(taxonomy=version).select_related("parent").order_by("order", "key")


def label_keys(version: TaxonomyVersion) -> list[str]:
    return list(labels_of(version).values_list("key", flat=True))


def get_label(version: TaxonomyVersion, key: str) -> Label:
    label = labels_of(version).filter(key=key).first()
    if label is None:
        raise NotFoundError(
            gettext("Label '%(key)s' does not exist in taxonomy v%(number)s.") % {"key": key, "number": version.number}
        )
    return label


def label_tree(version: TaxonomyVersion) -> list[tuple[Label, list[Label]]]:
    """Top-level labels in order, each with its sub-labels in order."""
    labels = list(labels_of(version))
    children: dict[int, list[Label]] = {}
    for label in labels:
        if label.parent_id is not None:
            children.setdefault(label.parent_id, []).append(label)
    return [(label, children.get(label.id, [])) for label in labels if label.parent_id is None]


def label_to_spec(label: Label) -> LabelSpec:
    return LabelSpec(
        key=label.key,
        name=label.name,
        parent=label.parent.key if label.parent_id else None,
        definition=label.definition,
        decision_rules=label.decision_rules,
        examples=list(label.examples),
        counter_examples=list(label.counter_examples),
        edge_cases=list(label.edge_cases),
        hotkey=label.hotkey,
        order=label.order,
        is_fallback=label.is_fallback,
    )


def version_specs(version: TaxonomyVersion) -> list[LabelSpec]:
    return [label_to_spec(label) for label in labels_of(version)]


def version_document(version: TaxonomyVersion) -> dict[str, Any]:
    """The exportable form of a version (see labeling.taxonomy_io for the format)."""
    return build_document(
        project=version.project.slug,
        number=version.number,
        status=str(version.status),
        notes=version.notes,
        labels=version_specs(version),
    )


@dataclass
class LabelChange:
    key: str
    # field name -> {"from": old value, "to": new value}
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(field, before, after) as text for pages: lists one entry a line, empty values as a dash."""
        return [(name, _readable(values["from"]), _readable(values["to"])) for name, values in self.changes.items()]

    @property
    def word_rows(self) -> list[tuple[str, list[Segment], list[Segment]]]:
        """(field, before, after) with the words that changed marked (characters, for Chinese)."""
        return [(name, *word_diff(before, after)) for name, before, after in self.rows]


def _readable(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(value) or "—"
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    return "—" if value in (None, "") else str(value)


# One token per CJK character (Chinese has no spaces between words), else a word, a run of spaces, or one mark.
TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]|\w+|\s+|[^\w\s]")


@dataclass(frozen=True)
class Segment:
    text: str
    changed: bool


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def _append(segments: list[Segment], text: str, changed: bool) -> None:
    if not text:
        return
    if segments and segments[-1].changed == changed:
        segments[-1] = Segment(segments[-1].text + text, changed)
    else:
        segments.append(Segment(text, changed))


def word_diff(before: str, after: str) -> tuple[list[Segment], list[Segment]]:
    """Both texts as segments; the tokens only one side has are marked as changed."""
    old, new = _tokens(before), _tokens(after)
    old_segments: list[Segment] = []
    new_segments: list[Segment] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        _append(old_segments, "".join(old[i1:i2]), changed)
        _append(new_segments, "".join(new[j1:j2]), changed)
    return old_segments, new_segments


@dataclass
class TaxonomyDiff:
    base: int
    target: int
    added: list[LabelSpec]
    removed: list[LabelSpec]
    changed: list[LabelChange]

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_specs(base: list[LabelSpec], target: list[LabelSpec]) -> tuple[list, list, list[LabelChange]]:
    """Labels are matched by key: a renamed key shows as one removed and one added label."""
    old = {spec.key: spec for spec in base}
    new = {spec.key: spec for spec in target}
    added = [spec for key, spec in new.items() if key not in old]
    removed = [spec for key, spec in old.items() if key not in new]
    changed = []
    for key, before in old.items():
        after = new.get(key)
        if after is None:
            continue
        changes = {
            name: {"from": getattr(before, name), "to": getattr(after, name)}
            for name in LABEL_FIELDS
            if getattr(before, name) != getattr(after, name)
        }
        if changes:
            changed.append(LabelChange(key=key, changes=changes))
    return added, removed, changed


def diff_versions(a: TaxonomyVersion, b: TaxonomyVersion) -> TaxonomyDiff:
    """What changes going from version `a` to version `b` (added / removed / changed, with per-field changes)."""
    if a.project_id != b.project_id:
        raise NotFoundError(gettext("Both versions must belong to the same project."))
    added, removed, changed = diff_specs(version_specs(a), version_specs(b))
    return TaxonomyDiff(base=a.number, target=b.number, added=added, removed=removed, changed=changed)
