"""The OpenAPI schema matches what the server answers: schemathesis sends schema-valid requests to a live test
server, as a project owner (session + CSRF) and as a project API token, and fails on any 5xx, undocumented
status code, content type or header, or a body that violates the documented schema.

Kept to a few examples per operation so the whole run takes a minute or two (it is part of `make test`)."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
import requests
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labeling.models import Role
from labeling.services.imports import run_import, start_import
from labeling.services.projects import add_member, create_api_token
from tests.feedback.conftest import published_model  # noqa: F401
from tests.modeling.conftest import _one_thread_and_own_dirs, scene_project, tiny_backbone  # noqa: F401

pytestmark = [pytest.mark.schema, pytest.mark.django_db(transaction=True)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"mode": "positive"},
    }
)
EXAMPLES = hypothesis_settings(
    max_examples=6,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
PASSWORD = "pw-for-tests"


def openapi_document() -> dict:
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


@pytest.fixture
def served_project(scene_project, published_model, owner, make_user):  # noqa: F811
    """The scene project with a published model, a finished import, a reviewer and a token."""
    add_member(project=scene_project, user=make_user("rita"), role=Role.REVIEWER)
    job = start_import(project=scene_project, content=_jsonl(), file_name="seed.jsonl", enqueue=False, created_by=owner)
    run_import(job.pk)
    return scene_project


def _jsonl() -> io.BytesIO:
    return io.BytesIO('{"text": "退款一直没到账", "id": "r-1", "channel": "app"}\n'.encode())


@pytest.fixture
def owner_session(live_server, served_project, owner) -> requests.Session:
    session = requests.Session()
    session.get(f"{live_server.url}/accounts/login/", timeout=10)
    response = session.post(
        f"{live_server.url}/accounts/login/",
        data={"username": owner.username, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:300]
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


@pytest.fixture
def token_session(live_server, served_project, owner) -> requests.Session:
    session = requests.Session()
    issued = create_api_token(project=served_project, name="schemathesis", created_by=owner)
    session.headers["Authorization"] = f"Token {issued.secret}"
    return session


def schema_failures(base_url: str, session: requests.Session, slug: str, *, min_successes: int) -> dict[str, str]:
    """Run every operation's examples; returns {operation: first failure}. One test drives all operations, so
    the served project, its model and the live server are set up once."""
    schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
    statuses: Counter[int] = Counter()
    session.hooks["response"].append(lambda response, *args, **kwargs: statuses.update([response.status_code]))
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        # Random slugs would only ever meet 404: every project path aims at the project that has data.
        takes_slug = any(parameter.name == "slug" for parameter in operation.path_parameters)
        strategy = operation.as_strategy(path_parameters={"slug": slug} if takes_slug else None)

        @EXAMPLES
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            # The credentials win over what schemathesis generates for the documented security schemes.
            case.call_and_validate(
                base_url=base_url,
                session=session,
                headers=dict(session.headers),
                cookies=session.cookies.get_dict(),
                checks=CHECKS,
                timeout=60,
            )

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # a check failed: go on, to report every operation
            failures[operation.label] = str(exc)[:2000]
    # The run really exercised the API: many requests, and successes among them, not only refusals.
    successes = sum(n for status, n in statuses.items() if status < 300)
    assert sum(statuses.values()) > 100 and successes >= min_successes, statuses
    return failures


def report(failures: dict[str, str]) -> str:
    return "\n\n".join(f"== {operation}\n{failure}" for operation, failure in failures.items())


def test_api_matches_its_schema_for_an_owner(live_server, owner_session, served_project):
    failures = schema_failures(live_server.url, owner_session, served_project.slug, min_successes=50)
    assert not failures, report(failures)


def test_api_matches_its_schema_for_a_project_token(live_server, token_session, served_project):
    failures = schema_failures(live_server.url, token_session, served_project.slug, min_successes=5)
    assert not failures, report(failures)


def test_the_schema_documents_what_the_issue_found_missing(db):
    document = openapi_document()
    paths = document["paths"]
    items = paths["/api/v1/projects/{slug}/items"]["get"]["responses"]["200"]["content"]["application/json"]
    assert items["schema"]["$ref"].endswith("/PaginatedItemList")
    export = paths["/api/v1/projects/{slug}/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/x-ndjson", "text/csv"}
    taxonomy = paths["/api/v1/projects/{slug}/taxonomy/versions/{number}/export"]["get"]["responses"]["200"]["content"]
    assert taxonomy["application/json"]["schema"]["$ref"].endswith("/TaxonomyDocument")
    token_operations = sorted(
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if {"projectToken": []} in operation.get("security", [])
    )
    assert token_operations == [
        "GET /api/v1/projects/{slug}/whoami",
        "POST /api/v1/projects/{slug}/feedback",
        "POST /api/v1/projects/{slug}/predict",
    ]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if operation.get("security") != [{}]:
                assert {"400", "401", "403"} <= set(operation["responses"]), f"{method} {path}"
