"""OpenAPI post-processing: the error envelope of `api_errors` documented on every operation.

Which statuses an operation can answer follows from what it is: anything can be refused (400); an
operation that needs credentials can answer 401 and 403; a path with parameters can miss (404); a body can
be too large (413) or of the wrong media type (415); a write can hit a state conflict (409) or a broker or
model that is down (503)."""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "ErrorEnvelope"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable, for programs."},
                "message": {"type": "string", "description": "For people."},
                "details": {"nullable": True, "description": "null or extra data (e.g. field → messages)."},
            },
        }
    },
}
DESCRIPTIONS = {
    "400": "Invalid input, or a business rule refuses the request.",
    "401": "No credentials, or an unknown or revoked token.",
    "403": "The role (or token) may not do this, or the CSRF token is missing.",
    "404": "No such object, or a project you are not a member of.",
    "409": "The object is in a state that forbids the action.",
    "413": "The body or the uploaded file is over its size limit.",
    "415": "Unsupported media type.",
    "503": "The task broker or the served model is unavailable.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    statuses = ["400"]
    if operation.get("security") != [{}]:
        statuses += ["401", "403"]
    if "{" in path:
        statuses.append("404")
    if method in WRITE_METHODS:
        statuses += ["409", "503"]
    if "requestBody" in operation or method in WRITE_METHODS:
        statuses += ["413", "415"]
    return statuses


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                responses.setdefault(
                    status,
                    {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": reference}}},
                )
    return result
