"""The registry as the training form, the API and the OpenAPI schema show it: each route with its title,
help text and parameters (type, default, range, description), read from its Params' JSON schema."""

from __future__ import annotations

from typing import Any

from modeling.engine.routes import get_route, route_names

_RANGE_KEYS = {
    "minimum": "min",
    "exclusiveMinimum": "min_exclusive",
    "maximum": "max",
    "exclusiveMaximum": "max_exclusive",
}


def params_schema(name: str) -> dict[str, Any]:
    """The JSON schema of a route's params (pydantic's, closed to unknown keys)."""
    schema = get_route(name).Params.model_json_schema()
    schema.setdefault("additionalProperties", False)
    return schema


def _types(prop: dict[str, Any]) -> tuple[list[str], list[Any], dict[str, Any]]:
    """(types, allowed values, range) of one property; ``anyOf`` (e.g. int | None) is flattened."""
    types: list[str] = []
    values: list[Any] = []
    bounds: dict[str, Any] = {}
    for option in prop.get("anyOf", [prop]):
        if "enum" in option:
            values.extend(option["enum"])
        if "const" in option:
            values.append(option["const"])
        if option.get("type") and option["type"] not in types:
            types.append(option["type"])
        bounds.update({short: option[key] for key, short in _RANGE_KEYS.items() if key in option})
    return types, values, bounds


def describe_params(name: str) -> list[dict[str, Any]]:
    schema = params_schema(name)
    rows = []
    for key, prop in schema.get("properties", {}).items():
        types, values, bounds = _types(prop)
        row: dict[str, Any] = {
            "name": key,
            "type": " | ".join(types) or "any",
            "default": prop.get("default"),
            "description": prop.get("description", ""),
        }
        if values:
            row["choices"] = values
        row.update(bounds)
        rows.append(row)
    return rows


def describe_route(name: str) -> dict[str, Any]:
    route = get_route(name)
    return {
        "name": route.name,
        "title": route.title,
        "help": route.help,
        "needs_training": bool(route.needs_training),
        "params": describe_params(name),
    }


def describe_routes() -> list[dict[str, Any]]:
    return [describe_route(name) for name in route_names()]
