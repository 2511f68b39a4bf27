"""Taxonomy documents: the YAML/JSON form of one version, parsed and checked without touching the DB.

A document is a mapping with `labels`, a list of label mappings. Every problem is reported with the
label (by key or position) and the field, so an owner can fix the file and upload it again."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml
from django.utils.translation import gettext
from yaml.composer import ComposerError
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

from sceneclf_site.parsers import JSONTooDeep, UnstorableJSON, document_problem, loads_checked

DOCUMENT_FORMAT = "sceneclf-taxonomy"
DOCUMENT_FORMAT_VERSION = 1
FORMATS = ("yaml", "json")
MAX_HIERARCHY_DEPTH = 2
# A document nests a few levels (document → labels → label → examples); far deeper is an attack, not a taxonomy.
MAX_DOCUMENT_DEPTH = 16
# Errors quote what the file said; a hostile file must not turn that into a huge answer.
MAX_PROBLEMS = 50
MAX_PROBLEM_CHARS = 300

# Dataset labels such as "买家咨询补货/上货时间" or "card arrival" must work as keys; URLs carry keys with the
# path converter, so only the characters that break a URL (\ ? # %) and outer or control whitespace are refused.
KEY_PATTERN = re.compile(r"^[^\s\\?#%](?:[^\\?#%\x00-\x1f]*[^\s\\?#%])?$")
KEY_MAX_CHARS = 64
NAME_MAX_CHARS = 100
LIST_FIELDS = ("examples", "counter_examples", "edge_cases")
TEXT_FIELDS = ("definition", "decision_rules")
# Order of fields in exported files and in diffs: what a reader looks at first comes first.
LABEL_FIELDS = (
    "key",
    "name",
    "parent",
    "definition",
    "decision_rules",
    "examples",
    "counter_examples",
    "edge_cases",
    "hotkey",
    "order",
    "is_fallback",
)


class TaxonomyDocumentError(ValueError):
    """A document that cannot become a taxonomy. `problems` lists every issue found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        kept = [_shorten(problem, MAX_PROBLEM_CHARS) for problem in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            kept.append(f"... and {len(problems) - MAX_PROBLEMS} more problems.")
        super().__init__("; ".join(kept))
        self.problems = kept


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _BoundedSafeLoader(yaml.SafeLoader):
    """The safe loader without aliases (one `*a` can stand for millions of nodes: "billion laughs") and with
    a nesting limit (the composer recurses once per level). Both are refused while composing, before any
    Python object is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise ComposerError(None, None, "aliases (*name) are not allowed in taxonomy files", event.start_mark)
        nests = self.check_event(SequenceStartEvent, MappingStartEvent)
        if nests:
            self._depth += 1
            if self._depth > MAX_DOCUMENT_DEPTH:
                event = self.peek_event()
                raise ComposerError(
                    None, None, f"the document nests deeper than {MAX_DOCUMENT_DEPTH} levels", event.start_mark
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if nests:
                self._depth -= 1


@dataclass
class LabelSpec:
    key: str
    name: str
    parent: str | None = None
    definition: str = ""
    decision_rules: str = ""
    examples: list[str] = field(default_factory=list)
    counter_examples: list[str] = field(default_factory=list)
    edge_cases: list[str] = field(default_factory=list)
    hotkey: str = ""
    order: int = 0
    is_fallback: bool = False

    def to_mapping(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items()}


def _where(index: int, raw: Any) -> str:
    key = raw.get("key") if isinstance(raw, dict) else None
    return f"label '{key}'" if isinstance(key, str) and key else f"label #{index + 1}"


def _string(raw: dict, name: str, where: str, problems: list[str], *, required: bool = False) -> str:
    value = raw.get(name)
    if value is None:
        if required:
            problems.append(f"{where}: field '{name}' is required.")
        return ""
    if not isinstance(value, str):
        problems.append(f"{where}: field '{name}' must be text, got {type(value).__name__}.")
        return ""
    return value.strip()


def _string_list(raw: dict, name: str, where: str, problems: list[str]) -> list[str]:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        problems.append(f"{where}: field '{name}' must be a list of texts.")
        return []
    return [entry.strip() for entry in value if entry.strip()]


def label_from_mapping(raw: Any, index: int, problems: list[str]) -> LabelSpec | None:
    """One label mapping → LabelSpec; appends to `problems` and returns None when it is unusable."""
    where = _where(index, raw)
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping of fields, got {type(raw).__name__}.")
        return None
    unknown = sorted(set(raw) - set(LABEL_FIELDS))
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(map(str, unknown))}.")
    before = len(problems)
    key = _string(raw, "key", where, problems, required=True)
    name = _string(raw, "name", where, problems) or key
    parent = raw.get("parent")
    if parent is not None and not isinstance(parent, str):
        problems.append(f"{where}: field 'parent' must be a label key or empty.")
        parent = None
    order = raw.get("order", index)
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        problems.append(f"{where}: field 'order' must be a whole number ≥ 0.")
        order = index
    is_fallback = raw.get("is_fallback", False)
    if not isinstance(is_fallback, bool):
        problems.append(f"{where}: field 'is_fallback' must be true or false.")
        is_fallback = False
    hotkey = raw.get("hotkey", "")
    if isinstance(hotkey, int) and not isinstance(hotkey, bool):
        hotkey = str(hotkey)  # YAML reads `hotkey: 1` as a number
    if hotkey is None:
        hotkey = ""
    if not isinstance(hotkey, str):
        problems.append(f"{where}: field 'hotkey' must be a single character.")
        hotkey = ""
    spec = LabelSpec(
        key=key,
        name=name,
        parent=(parent or "").strip() or None,
        definition=_string(raw, "definition", where, problems),
        decision_rules=_string(raw, "decision_rules", where, problems),
        examples=_string_list(raw, "examples", where, problems),
        counter_examples=_string_list(raw, "counter_examples", where, problems),
        edge_cases=_string_list(raw, "edge_cases", where, problems),
        hotkey=hotkey.strip(),
        order=order,
        is_fallback=is_fallback,
    )
    problems.extend(check_label_fields(spec))
    return spec if len(problems) == before else None


def check_label_fields(spec: LabelSpec) -> list[str]:
    """Checks of one label on its own (the set-wide rules are in `check_label_set`)."""
    where = f"label '{spec.key}'" if spec.key else "label"
    problems = []
    if not spec.key:
        problems.append(f"{where}: field 'key' must not be empty.")
    elif len(spec.key) > KEY_MAX_CHARS:
        problems.append(f"{where}: field 'key' is longer than {KEY_MAX_CHARS} characters.")
    elif not KEY_PATTERN.match(spec.key):
        problems.append(f"{where}: field 'key' must not start or end with a space, nor contain any of \\ ? # %.")
    if not spec.name:
        problems.append(f"{where}: field 'name' must not be empty.")
    elif len(spec.name) > NAME_MAX_CHARS:
        problems.append(f"{where}: field 'name' is longer than {NAME_MAX_CHARS} characters.")
    if len(spec.hotkey) > 1 or spec.hotkey.isspace():
        problems.append(f"{where}: field 'hotkey' must be a single visible character, got '{spec.hotkey}'.")
    if spec.parent is not None and spec.parent == spec.key:
        problems.append(f"{where}: field 'parent' cannot be the label itself.")
    return problems


def check_label_set(specs: list[LabelSpec]) -> list[str]:
    """Rules over a whole version: unique keys and hotkeys, exactly one fallback, parents that exist, two levels."""
    problems = []
    keys = Counter(spec.key for spec in specs)
    problems += [f"label '{key}': field 'key' is used by {n} labels." for key, n in keys.items() if n > 1]
    hotkeys = Counter(spec.hotkey for spec in specs if spec.hotkey)
    for hotkey, n in hotkeys.items():
        if n > 1:
            owners = ", ".join(f"'{spec.key}'" for spec in specs if spec.hotkey == hotkey)
            problems.append(f"labels {owners}: field 'hotkey' '{hotkey}' is used {n} times.")
    fallbacks = [spec.key for spec in specs if spec.is_fallback]
    if not fallbacks:
        problems.append("field 'is_fallback': exactly one label must be the fallback (其他 / other); none is.")
    elif len(fallbacks) > 1:
        problems.append(f"field 'is_fallback': exactly one label must be the fallback; {', '.join(fallbacks)} are.")
    by_key = {spec.key: spec for spec in specs}
    for spec in specs:
        if spec.parent is None:
            continue
        parent = by_key.get(spec.parent)
        if parent is None:
            problems.append(f"label '{spec.key}': field 'parent' names '{spec.parent}', which is not in this version.")
        elif parent.parent is not None:
            problems.append(
                f"label '{spec.key}': field 'parent' '{spec.parent}' is itself a sub-label; "
                f"at most {MAX_HIERARCHY_DEPTH} levels are allowed."
            )
        if spec.is_fallback:
            problems.append(f"label '{spec.key}': the fallback label must be a top-level label (no parent).")
    return problems


def specs_from_document(document: Any) -> tuple[list[LabelSpec], str]:
    """Validate a parsed document; returns (labels, notes) or raises TaxonomyDocumentError listing every problem."""
    if not isinstance(document, dict):
        raise TaxonomyDocumentError([gettext("The document must be a mapping with a 'labels' list.")])
    fmt = document.get("format", DOCUMENT_FORMAT)
    if fmt != DOCUMENT_FORMAT:
        got = _shorten(str(fmt), 60)
        raise TaxonomyDocumentError(
            [
                gettext("field 'format' must be '%(document_format)s', got '%(got)s'.")
                % {"document_format": DOCUMENT_FORMAT, "got": got}
            ]
        )
    version = document.get("format_version", DOCUMENT_FORMAT_VERSION)
    if version != DOCUMENT_FORMAT_VERSION:
        got = _shorten(str(version), 60)
        raise TaxonomyDocumentError(
            [gettext("field 'format_version' %(got)s is not supported (use 1).") % {"got": got}]
        )
    raw_labels = document.get("labels")
    if not isinstance(raw_labels, list) or not raw_labels:
        raise TaxonomyDocumentError([gettext("field 'labels' must be a non-empty list of labels.")])
    notes = document.get("notes") or ""
    if not isinstance(notes, str):
        raise TaxonomyDocumentError([gettext("field 'notes' must be text.")])
    problems: list[str] = []
    specs = [label_from_mapping(raw, index, problems) for index, raw in enumerate(raw_labels)]
    if problems:
        raise TaxonomyDocumentError(problems)
    labels = [spec for spec in specs if spec is not None]
    problems = check_label_set(labels)
    if problems:
        raise TaxonomyDocumentError(problems)
    return labels, notes


def build_document(*, project: str, number: int, status: str, notes: str, labels: list[LabelSpec]) -> dict:
    return {
        "format": DOCUMENT_FORMAT,
        "format_version": DOCUMENT_FORMAT_VERSION,
        "project": project,
        "version": number,
        "status": status,
        "notes": notes,
        "labels": [spec.to_mapping() for spec in labels],
    }


def dump_document(document: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=1000)
    raise TaxonomyDocumentError(
        [gettext("Unknown export format '%(fmt)s'. Use one of: %(value)s.") % {"fmt": fmt, "value": ", ".join(FORMATS)}]
    )


def guess_format(filename: str, text: str) -> str:
    lowered = filename.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def parse_document(text: str, fmt: str) -> Any:
    """Text → Python data. YAML is read with the safe loader (no object construction from files)."""
    try:
        if fmt == "json":
            return loads_checked(text, max_depth=MAX_DOCUMENT_DEPTH)
        if fmt == "yaml":
            return _load_yaml(text)
    except json.JSONDecodeError as exc:
        raise TaxonomyDocumentError(
            [
                gettext("Not valid JSON: %(msg)s at line %(lineno)s, column %(colno)s.")
                % {"msg": exc.msg, "lineno": exc.lineno, "colno": exc.colno}
            ]
        ) from exc
    except (JSONTooDeep, UnstorableJSON) as exc:
        raise TaxonomyDocumentError([gettext("Not a usable JSON document: %(exc)s") % {"exc": exc}]) from exc
    except ValueError as exc:  # NaN / Infinity
        raise TaxonomyDocumentError([gettext("Not valid JSON: %(exc)s.") % {"exc": exc}]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TaxonomyDocumentError(
            [gettext("Not valid YAML%(at)s: %(value)s.") % {"at": at, "value": getattr(exc, "problem", exc)}]
        ) from exc
    raise TaxonomyDocumentError(
        [gettext("Unknown import format '%(fmt)s'. Use one of: %(value)s.") % {"fmt": fmt, "value": ", ".join(FORMATS)}]
    )


def _load_yaml(text: str) -> Any:
    loader = _BoundedSafeLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    problem = document_problem(data)
    if problem is not None:
        raise TaxonomyDocumentError([gettext("Not a usable YAML document: %(value)s") % {"value": problem[0]}])
    return data
