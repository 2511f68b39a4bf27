"""The taxonomy as training data: each label's name, definition, rules and examples become labelled texts.

An edge case becomes a text only when it states its label ("text → key", as agreement review writes them);
an edge case without one is a case in doubt, not an example of the label it is filed under.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from modeling.engine.routes.base import LabelInfo, Taxonomy

_STATED_LABEL = re.compile(r"^(?P<text>.+?)\s*(?:→|->|=>)\s*(?P<key>[^→]+?)\s*$")


@dataclass(frozen=True)
class DefinitionText:
    text: str
    label: str
    source: str  # "name" | "definition" | "rule" | "example" | "edge_case"


def label_texts(label: LabelInfo, label_keys: Sequence[str]) -> list[DefinitionText]:
    """What one label's entry says, as (text, label) pairs; an edge case may state another label."""
    own = [
        ("name", label.name or label.key),
        ("definition", label.definition),
        *(("rule", rule) for rule in label.rules),
        *(("example", example) for example in label.examples),
    ]
    texts = [DefinitionText(text.strip(), label.key, source) for source, text in own if text and text.strip()]
    for case in label.edge_cases:
        stated = _STATED_LABEL.match(case.strip())
        if stated and stated["key"] in label_keys:
            texts.append(DefinitionText(stated["text"].strip(), stated["key"], "edge_case"))
    return texts


def definition_texts(taxonomy: Taxonomy, label_keys: Sequence[str]) -> list[DefinitionText]:
    """Every label's texts, once per (text, label), for the labels the route learns."""
    seen: set[tuple[str, str]] = set()
    out = []
    for label in taxonomy.labels:
        if label.key not in label_keys:
            continue
        for item in label_texts(label, label_keys):
            if (item.text, item.label) not in seen:
                seen.add((item.text, item.label))
                out.append(item)
    return out
