"""Writes for taxonomy versions and labels.

A project has at most one draft; published versions never change. Every edit of a draft is checked
against the same rules as an imported file (`labeling.taxonomy_io.check_label_set`), so the draft is
always publishable as far as its structure goes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max, ProtectedError, RestrictedError
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import GoldLabel, Label, Project, TaxonomyVersion
from labeling.selectors.taxonomy import current_draft, latest_published, version_specs
from labeling.selectors.workspace import RESERVED_KEYS
from labeling.taxonomy_io import (
    LABEL_FIELDS,
    LabelSpec,
    TaxonomyDocumentError,
    check_label_set,
    label_from_mapping,
    parse_document,
    specs_from_document,
)
from sceneclf_site.api_errors import ConflictError, NotFoundError, ServiceError

FALLBACK_KEY = "其他"
RECHECK_REASON_MAX = 200


def create_initial_draft(project: Project) -> TaxonomyVersion:
    draft = TaxonomyVersion.objects.create(project=project, number=_next_number(project))
    Label.objects.create(
        taxonomy=draft,
        key=FALLBACK_KEY,
        name=FALLBACK_KEY,
        definition=gettext("Out of scope or uncertain: the text fits no other scene."),
        is_fallback=True,
        hotkey="0",
        order=999,
    )
    return draft


def _next_number(project: Project) -> int:
    return (TaxonomyVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1


def _lock_project(project: Project) -> None:
    # Serialises draft creation and publishing per project (a no-op on SQLite, which locks the whole file).
    Project.objects.select_for_update().filter(pk=project.pk).first()


def _locked_draft(draft: TaxonomyVersion) -> TaxonomyVersion:
    locked = TaxonomyVersion.objects.select_for_update().filter(pk=draft.pk).first()
    if locked is None:
        raise NotFoundError(gettext("This taxonomy draft no longer exists."))
    if locked.status != TaxonomyVersion.Status.DRAFT:
        raise ConflictError(
            gettext("Taxonomy v%(number)s is published and cannot be edited; create a new draft.")
            % {"number": locked.number},
            code="published",
        )
    return locked


def _invalid(problems: list[str]) -> ServiceError:
    return ServiceError(
        problems[0] if len(problems) == 1 else "; ".join(problems),
        code="invalid_taxonomy",
        details={"problems": problems},
    )


def _write_labels(draft: TaxonomyVersion, specs: Iterable[LabelSpec]) -> list[Label]:
    """Create labels on an empty draft: parents first, so children can point at them."""
    specs = list(specs)
    created: dict[str, Label] = {}
    for spec in sorted(specs, key=lambda s: s.parent is not None):
        created[spec.key] = Label.objects.create(taxonomy=draft, **_model_fields(spec, created))
    return [created[spec.key] for spec in specs]


def _model_fields(spec: LabelSpec, labels_by_key: Mapping[str, Label]) -> dict[str, Any]:
    fields = {name: getattr(spec, name) for name in LABEL_FIELDS if name != "parent"}
    fields["parent"] = labels_by_key[spec.parent] if spec.parent else None
    return fields


# --- Drafts -----------------------------------------------------------------------------------


@transaction.atomic
def create_draft(*, project: Project) -> TaxonomyVersion:
    """A new draft copied from the latest published version (labels and parents), or the initial draft."""
    _lock_project(project)
    existing = current_draft(project)
    if existing is not None:
        raise ConflictError(
            gettext("Taxonomy draft v%(number)s already exists; edit or discard it first.")
            % {"number": existing.number},
            code="draft_exists",
        )
    base = latest_published(project)
    if base is None:
        return create_initial_draft(project)
    draft = TaxonomyVersion.objects.create(project=project, number=_next_number(project), notes="")
    _write_labels(draft, version_specs(base))
    return draft


def get_or_create_draft(*, project: Project) -> TaxonomyVersion:
    return current_draft(project) or create_draft(project=project)


@transaction.atomic
def discard_draft(*, draft: TaxonomyVersion) -> None:
    draft = _locked_draft(draft)
    try:
        draft.labels.all().delete()
        draft.delete()
    except (ProtectedError, RestrictedError) as exc:
        # Gold labels or model versions point at this draft: keep it rather than lose what they refer to.
        raise ConflictError(
            gettext("Other records refer to this draft; it cannot be discarded."), code="in_use"
        ) from exc


@transaction.atomic
def update_draft_notes(*, draft: TaxonomyVersion, notes: str) -> TaxonomyVersion:
    draft = _locked_draft(draft)
    draft.notes = _unix_newlines((notes or "").strip())
    draft.save(update_fields=["notes"])
    return draft


# --- Labels on a draft ----------------------------------------------------------------------------


def _unix_newlines(value: Any) -> Any:
    """Browsers submit textarea line breaks as CRLF: store LF so an untouched field never shows up in a diff."""
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n")
    if isinstance(value, list):
        return [_unix_newlines(element) for element in value]
    return value


def _checked_spec(data: Mapping[str, Any], position: int) -> LabelSpec:
    problems: list[str] = []
    spec = label_from_mapping({name: _unix_newlines(value) for name, value in data.items()}, position, problems)
    if spec is None:
        raise _invalid(problems)
    return spec


def _check_hotkeys(specs: Iterable[LabelSpec]) -> None:
    """The workspace keeps some keys for itself; a label given one would silently get another key there."""
    problems = {
        spec.key: (
            f"label '{spec.key}': field 'hotkey' '{spec.hotkey}' is reserved in the workspace for "
            f"{RESERVED_KEYS[spec.hotkey.lower()]}; choose another key."
        )
        for spec in specs
        if spec.hotkey and spec.hotkey.lower() in RESERVED_KEYS
    }
    if problems:
        raise ServiceError(
            "; ".join(problems.values()),
            code="reserved_hotkey",
            details={"problems": list(problems.values()), "fields": {"hotkey": list(problems.values())}},
        )


def _check_set(specs: list[LabelSpec]) -> None:
    problems = check_label_set(specs)
    if problems:
        raise _invalid(problems)


@transaction.atomic
def add_label(*, draft: TaxonomyVersion, data: Mapping[str, Any]) -> Label:
    """Add a label to the draft. `data` uses the document field names (see taxonomy_io.LABEL_FIELDS)."""
    draft = _locked_draft(draft)
    specs = version_specs(draft)
    data = dict(data)
    if data.get("order") is None:
        data["order"] = max((spec.order for spec in specs if not spec.is_fallback), default=-1) + 1
    spec = _checked_spec(data, len(specs))
    _check_hotkeys([spec])
    if spec.is_fallback:
        raise _invalid(["field 'is_fallback': the draft already has its fallback; mark an existing label instead."])
    _check_set([*specs, spec])
    labels = {label.key: label for label in draft.labels.all()}
    return Label.objects.create(taxonomy=draft, **_model_fields(spec, labels))


@transaction.atomic
def update_label(*, draft: TaxonomyVersion, key: str, data: Mapping[str, Any]) -> Label:
    """Change some fields of a draft label (a partial update). Marking another label as fallback moves the flag."""
    draft = _locked_draft(draft)
    labels = {label.key: label for label in draft.labels.select_related("parent")}
    label = labels.get(key)
    if label is None:
        raise NotFoundError(
            gettext("Label '%(key)s' does not exist in taxonomy v%(number)s.") % {"key": key, "number": draft.number}
        )
    specs = version_specs(draft)
    position = next(i for i, spec in enumerate(specs) if spec.key == key)
    merged = {**specs[position].to_mapping(), **dict(data)}
    spec = _checked_spec(merged, position)
    if "hotkey" in data:  # an older label may hold a reserved key; edits of its other fields stay possible
        _check_hotkeys([spec])
    if specs[position].is_fallback and not spec.is_fallback:
        raise _invalid([f"label '{key}': field 'is_fallback' cannot be cleared; mark another label as fallback."])
    previous_fallback = None
    if spec.is_fallback and not specs[position].is_fallback:
        previous_fallback = next(s for s in specs if s.is_fallback)
        previous_fallback.is_fallback = False
    if spec.key != key and any(s.parent == key for s in specs):
        for child in specs:
            if child.parent == key:
                child.parent = spec.key  # children follow a renamed parent (the FK does this in the DB)
    specs[position] = spec
    _check_set(specs)
    if previous_fallback is not None:
        # Clear the old flag first: the DB allows at most one fallback at any moment.
        Label.objects.filter(taxonomy=draft, key=previous_fallback.key).update(is_fallback=False)
    labels.pop(key)
    for name, value in _model_fields(spec, labels).items():
        setattr(label, name, value)
    label.save()
    return label


@transaction.atomic
def delete_label(*, draft: TaxonomyVersion, key: str) -> None:
    draft = _locked_draft(draft)
    label = draft.labels.filter(key=key).first()
    if label is None:
        raise NotFoundError(
            gettext("Label '%(key)s' does not exist in taxonomy v%(number)s.") % {"key": key, "number": draft.number}
        )
    if label.is_fallback:
        raise _invalid([f"label '{key}' is the fallback label and cannot be deleted; mark another as fallback first."])
    children = list(label.children.values_list("key", flat=True))
    if children:
        raise _invalid([f"label '{key}' has sub-labels ({', '.join(children)}); move or delete them first."])
    label.delete()


@transaction.atomic
def reorder_labels(*, draft: TaxonomyVersion, keys: list[str]) -> None:
    """Set the display order: `keys` lists every label of the draft once, in the new order."""
    draft = _locked_draft(draft)
    labels = {label.key: label for label in draft.labels.all()}
    if sorted(keys) != sorted(labels):
        missing = sorted(set(labels) - set(keys))
        unknown = sorted(set(keys) - set(labels))
        raise _invalid([f"field 'keys' must list every label once (missing: {missing}, unknown: {unknown})."])
    for order, key in enumerate(keys):
        if labels[key].order != order:
            labels[key].order = order
            labels[key].save(update_fields=["order"])


def move_label(*, draft: TaxonomyVersion, key: str, offset: int) -> None:
    """Swap a label with its previous (offset -1) or next (+1) sibling: labels move within their level."""
    specs = version_specs(draft)
    spec = next((s for s in specs if s.key == key), None)
    if spec is None:
        raise NotFoundError(
            gettext("Label '%(key)s' does not exist in taxonomy v%(number)s.") % {"key": key, "number": draft.number}
        )
    siblings = [s.key for s in specs if s.parent == spec.parent]
    target = siblings.index(key) + (-1 if offset < 0 else 1)
    if not 0 <= target < len(siblings):
        return  # already first / last at its level
    keys = [s.key for s in specs]
    a, b = keys.index(key), keys.index(siblings[target])
    keys[a], keys[b] = keys[b], keys[a]
    reorder_labels(draft=draft, keys=keys)


def add_edge_case(*, project: Project, label_key: str, text: str) -> Label:
    """Append an edge case to a label of the project's draft (created from the latest published if needed)."""
    text = (text or "").strip()
    if not text:
        raise ServiceError(gettext("An edge case needs a text."))
    draft = get_or_create_draft(project=project)
    label = draft.labels.filter(key=label_key).first()
    if label is None:
        raise NotFoundError(
            gettext("Label '%(label_key)s' does not exist in taxonomy draft v%(number)s.")
            % {"label_key": label_key, "number": draft.number}
        )
    if text in label.edge_cases:
        return label
    return update_label(draft=draft, key=label_key, data={"edge_cases": [*label.edge_cases, text]})


# --- Publishing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    version: TaxonomyVersion
    rechecked_gold: int  # gold labels newly marked needs_recheck


@transaction.atomic
def publish_draft(*, draft: TaxonomyVersion, notes: str | None = None) -> PublishResult:
    """Publish the draft (atomic) and mark gold labels whose label was removed or split for re-check."""
    _lock_project(draft.project)
    draft = _locked_draft(draft)
    specs = version_specs(draft)
    problems = check_label_set(specs)
    if not any(not spec.is_fallback for spec in specs):
        problems.append("A taxonomy needs at least one label besides the fallback before it can be published.")
    if problems:
        raise _invalid(problems)
    previous = latest_published(draft.project)
    rechecked = _mark_gold_for_recheck(draft.project, version_specs(previous) if previous else [], specs, draft.number)
    if notes is not None:
        draft.notes = _unix_newlines(notes.strip())
    draft.status = TaxonomyVersion.Status.PUBLISHED
    draft.published_at = timezone.now()
    draft.save(update_fields=["status", "published_at", "notes"])
    return PublishResult(version=draft, rechecked_gold=rechecked)


def recheck_reasons(old: list[LabelSpec], new: list[LabelSpec], number: int) -> dict[str, str]:
    """Which label keys lose their meaning going from `old` to `new`, and why (key -> reason).

    A key that is gone was removed, or split when its key/name is now a parent or its examples moved to
    other labels; a kept key that newly has sub-labels was split into them."""
    new_by_key = {spec.key: spec for spec in new}
    children: dict[str, list[str]] = {}
    for spec in new:
        if spec.parent:
            children.setdefault(spec.parent, []).append(spec.key)
    reasons: dict[str, str] = {}
    for spec in old:
        if spec.key in new_by_key:
            had_children = any(other.parent == spec.key for other in old)
            if spec.key in children and not had_children:
                reasons[spec.key] = f"Split into sub-labels {', '.join(children[spec.key])} in taxonomy v{number}."
            continue
        parent_match = next((p for p in children if p == spec.key or new_by_key[p].name in {spec.key, spec.name}), None)
        moved_to = sorted({other.key for other in new for ex in spec.examples if ex in other.examples})
        if parent_match:
            reasons[spec.key] = f"Split into sub-labels {', '.join(children[parent_match])} in taxonomy v{number}."
        elif moved_to:
            reasons[spec.key] = f"Removed in taxonomy v{number}; its examples moved to {', '.join(moved_to)}."
        else:
            reasons[spec.key] = f"Label removed in taxonomy v{number}."
    return reasons


def _mark_gold_for_recheck(project: Project, old: list[LabelSpec], new: list[LabelSpec], number: int) -> int:
    reasons = recheck_reasons(old, new, number)
    new_keys = {spec.key for spec in new}
    pending = GoldLabel.objects.filter(item__project=project, needs_recheck=False)
    marked = 0
    for key, reason in reasons.items():
        marked += pending.filter(label_key=key).update(needs_recheck=True, recheck_reason=reason[:RECHECK_REASON_MAX])
    # At minimum every gold label whose key the new version lacks is marked, whatever its history.
    orphan_reason = f"Label not in taxonomy v{number}."
    marked += pending.exclude(label_key__in=new_keys).update(needs_recheck=True, recheck_reason=orphan_reason)
    return marked


# --- Import -----------------------------------------------------------------------------------------


@transaction.atomic
def import_taxonomy(*, project: Project, text: str, fmt: str, replace_draft: bool = False) -> TaxonomyVersion:
    """Create a draft from a YAML/JSON document. Everything is validated first; nothing is half-imported."""
    try:
        specs, notes = specs_from_document(parse_document(_unix_newlines(text), fmt))
    except TaxonomyDocumentError as exc:
        raise _invalid(exc.problems) from exc
    _check_hotkeys(specs)
    _lock_project(project)
    draft = current_draft(project)
    if draft is not None and not replace_draft:
        raise ConflictError(
            gettext("Taxonomy draft v%(number)s already exists; discard it or import with replace_draft.")
            % {"number": draft.number},
            code="draft_exists",
        )
    if draft is None:
        draft = TaxonomyVersion.objects.create(project=project, number=_next_number(project), notes=notes)
    else:
        draft.labels.all().delete()
        draft.notes = notes
        draft.save(update_fields=["notes"])
    _write_labels(draft, specs)
    return draft
