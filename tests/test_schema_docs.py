"""The API reference reads well: every operation has a summary and an area tag, and examples show the right body."""

from __future__ import annotations

from collections import Counter

import pytest
from drf_spectacular.generators import SchemaGenerator

AREAS = {"projects", "taxonomy", "items", "workspace", "review", "models", "predict", "health"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_every_operation_has_a_summary_and_one_area_tag(schema):
    unsummarised = [f"{m} {p}" for m, p, op in _operations(schema) if not op.get("summary")]
    assert not unsummarised
    tags = {f"{m} {p}": tuple(op.get("tags", ())) for m, p, op in _operations(schema)}
    assert all(len(t) == 1 and t[0] in AREAS for t in tags.values()), tags
    used = Counter(t[0] for t in tags.values())
    assert set(used) == AREAS
    # Without the decorators every operation under /projects/{slug}/ would fall into the "projects" tag.
    assert tags["post /api/v1/projects/{slug}/predict"] == ("predict",)
    assert tags["get /api/v1/projects/{slug}/review-tasks"] == ("review",)


def test_predict_examples_show_a_request_and_a_prediction(schema):
    operation = schema["paths"]["/api/v1/projects/{slug}/predict"]["post"]
    request_examples = operation["requestBody"]["content"]["application/json"]["examples"]
    response_examples = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert all("text" in example["value"] for example in request_examples.values())
    assert response_examples
    assert all({"label", "topk", "request_id"} <= set(e["value"]) for e in response_examples.values())
