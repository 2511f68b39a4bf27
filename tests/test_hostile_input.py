"""Hostile and broken request bodies get a 4xx with the JSON error envelope, and the server keeps serving."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from labeling.models import ImportJob, TaxonomyVersion
from labeling.services.projects import create_api_token

PREDICT = "/api/v1/projects/alpha/predict"
LABELS = "/api/v1/projects/alpha/taxonomy/draft/labels"


@pytest.fixture
def owner_api(owner, project) -> APIClient:
    client = APIClient()
    client.force_authenticate(owner)
    return client


@pytest.fixture
def token_api(owner, project) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {create_api_token(project=project, name='t', created_by=owner).secret}"
    )
    return client


def post_raw(client: APIClient, path: str, body: str | bytes):  # type: ignore[no-untyped-def]
    return client.generic("POST", path, body, content_type="application/json")


def assert_envelope(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def still_serving(client: APIClient) -> None:
    assert client.get("/api/v1/projects/alpha").status_code == 200


@pytest.mark.smoke
@pytest.mark.parametrize("path", [PREDICT, LABELS, "/api/v1/projects", "/api/v1/projects/alpha/split"])
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(owner_api, owner, path):
    owner.is_staff = True  # a project creator, so POST /projects reaches the body
    owner.save(update_fields=["is_staff"])
    body = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    error = assert_envelope(post_raw(owner_api, path, body), 400, "json_too_deep")
    assert error["details"] == {"limit": 32}
    still_serving(owner_api)


def test_nesting_within_the_limit_and_brackets_inside_strings_are_fine(owner_api):
    text = "[" * 5000 + "很多括号" + "}" * 5000
    response = post_raw(owner_api, LABELS, f'{{"key": "k", "name": "n", "examples": ["{text}"]}}')
    assert response.status_code == 201, response.content[:300]


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"text": "abc\\ud800def"}', "text"),
        ('{"texts": ["ok", "abc\\udfffdef"]}', "texts[1]"),
        ('{"text": "fine", "session_id": "s-\\ud800"}', "session_id"),
        ('{"text": "nul \\u0000 inside"}', "text"),
    ],
)
def test_lone_surrogates_and_nul_are_a_400_naming_the_field(token_api, owner_api, body, field):
    error = assert_envelope(post_raw(token_api, PREDICT, body), 400, "invalid_text")
    assert error["details"]["field"] == field
    assert field in error["message"]
    still_serving(owner_api)


def test_a_valid_surrogate_pair_is_an_ordinary_character(owner_api):
    response = post_raw(owner_api, LABELS, '{"key": "emoji", "name": "\\ud83d\\ude00"}')
    assert response.status_code == 201 and response.json()["name"] == "😀"


def test_nan_and_huge_numbers_are_refused(owner_api):
    assert_envelope(post_raw(owner_api, "/api/v1/projects/alpha/split", '{"train": NaN}'), 400, "parse_error")
    assert_envelope(post_raw(owner_api, "/api/v1/projects/alpha/split", '{"train": 1e400}'), 400, "invalid_text")


@pytest.mark.smoke
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_the_limit_is_a_json_413(token_api, owner_api):
    error = assert_envelope(post_raw(token_api, PREDICT, '{"text": "' + "长" * 2000 + '"}'), 413, "request_too_large")
    assert error["details"] == {"limit": 1000}
    still_serving(owner_api)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_form_body_over_the_limit_is_a_json_413_too(owner_api):
    response = owner_api.post("/api/v1/projects/alpha/split", {"seed": "1" * 5000}, format="multipart")
    assert_envelope(response, 413, "request_too_large")


@pytest.mark.smoke
def test_an_upload_over_the_cap_is_refused_before_it_is_stored(owner_api, settings, tmp_path):
    settings.UPLOAD_MAX_BYTES = 10_000
    settings.UPLOAD_DIR = tmp_path / "uploads"
    data = b'{"text": "hello"}\n' * 2000  # 36 kB
    response = owner_api.post(
        "/api/v1/projects/alpha/imports", {"file": SimpleUploadedFile("big.jsonl", data)}, format="multipart"
    )
    error = assert_envelope(response, 413, "file_too_large")
    assert error["details"] == {"limit": 10_000}
    assert not ImportJob.objects.exists()
    uploads = settings.UPLOAD_DIR / "imports"
    assert not uploads.exists() or not any(uploads.rglob("*.jsonl"))
    small = owner_api.post(
        "/api/v1/projects/alpha/imports", {"file": io.BytesIO(b'{"text": "hello"}\n')}, format="multipart"
    )
    assert small.status_code == 202


YAML_BOMB = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
format: *g
labels: *g
"""


def taxonomy_import(client: APIClient, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/projects/alpha/taxonomy/import", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )


@pytest.mark.smoke
def test_yaml_aliases_are_refused_with_a_small_answer(owner_api):
    response = taxonomy_import(owner_api, "bomb.yaml", YAML_BOMB.encode())
    error = assert_envelope(response, 400, "invalid_taxonomy")
    assert "alias" in error["message"]
    assert len(response.content) < 2000
    assert TaxonomyVersion.objects.filter(project__slug="alpha").count() == 1
    still_serving(owner_api)


@pytest.mark.parametrize(
    ("name", "data"),
    [("deep.yaml", b"labels: " + b"[" * 50_000 + b"]" * 50_000), ("deep.json", b'{"labels": ' + b"[" * 50_000 + b"]}")],
)
def test_deeply_nested_taxonomy_files_are_refused(owner_api, name, data):
    error = assert_envelope(taxonomy_import(owner_api, name, data), 400, "invalid_taxonomy")
    assert "deeper" in error["message"]


def test_echoed_values_in_taxonomy_errors_are_cut_short(owner_api):
    huge = "x" * 100_000
    response = taxonomy_import(owner_api, "t.json", f'{{"format": "{huge}", "labels": []}}'.encode())
    assert_envelope(response, 400, "invalid_taxonomy")
    assert len(response.content) < 2000


@pytest.mark.smoke
def test_an_api_url_that_matches_no_route_answers_json(owner_api):
    for path in ("/api/v1/projects/alpha/review-tasks/-3/resolve", "/api/v1/no-such-thing"):
        assert_envelope(owner_api.post(path, {}, format="json"), 404, "not_found")
    page = owner_api.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_form_fields_with_nul_are_refused(owner_api):
    response = owner_api.post(
        "/api/v1/projects/alpha/imports",
        {"file": SimpleUploadedFile("a.jsonl", b'{"text": "x"}\n'), "source": "crm\x00"},
        format="multipart",
    )
    assert_envelope(response, 400, "invalid_text")
    assert not ImportJob.objects.exists()
