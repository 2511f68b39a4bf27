"""The route registry: every route module registers itself here; training, serving and the API list them.

``get_route(name)`` returns the route, ``parse_params(name, data)`` its validated parameters (ParamsError
names an unknown or invalid key)."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from modeling.engine.routes.base import ParamsError, Route, RouteParams

# Modules imported on first use, so importing the registry stays cheap (torch loads only when a route does).
ROUTE_MODULES: dict[str, str] = {
    "probe": "modeling.engine.routes.probe",
    "tfidf": "modeling.engine.routes.tfidf",
    "encoder_ft": "modeling.engine.routes.encoder_ft",
    "lora": "modeling.engine.routes.lora",
    "prefix": "modeling.engine.routes.prefix",
    "zero_shot": "modeling.engine.routes.zero_shot",
}
_routes: dict[str, Route] = {}


def register(route: Route) -> Route:
    _routes[route.name] = route
    return route


def route_names() -> list[str]:
    return list(ROUTE_MODULES)


def get_route(name: str) -> Route:
    if name not in ROUTE_MODULES:
        raise ParamsError(f"unknown route {name!r}; choose one of {', '.join(ROUTE_MODULES)}", key="route")
    if name not in _routes:
        importlib.import_module(ROUTE_MODULES[name])
    return _routes[name]


def parse_params(name: str, data: dict[str, Any] | None) -> RouteParams:
    route = get_route(name)
    try:
        return route.Params.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first.get("loc", ())) or None
        if first.get("type") == "extra_forbidden":
            raise ParamsError(f"unknown parameter {key!r} for route {name!r}", key=key) from exc
        raise ParamsError(f"parameter {key!r} of route {name!r}: {first.get('msg')}", key=key) from exc
