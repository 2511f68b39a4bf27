"""Who may do what: project isolation (404), role limits (403), token scope and revocation (401)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import ApiToken
from labeling.selectors.taxonomy import current_draft
from labeling.services.projects import create_api_token, revoke_api_token

# Pages and API endpoints an annotator of "alpha" tries on project "beta" (reads and writes).
FOREIGN_PAGES = [
    ("get", "/projects/beta/"),
    ("get", "/projects/beta/taxonomy/"),
    ("get", "/projects/beta/taxonomy/v1/"),
    ("get", "/projects/beta/taxonomy/diff/"),
    ("get", "/projects/beta/members/"),
    ("get", "/projects/beta/settings/"),
    ("post", "/projects/beta/taxonomy/draft/labels/new/"),
    ("post", "/projects/beta/taxonomy/draft/publish/"),
    ("post", "/projects/beta/tokens/"),
]
FOREIGN_API = [
    ("get", "/api/v1/projects/beta"),
    ("patch", "/api/v1/projects/beta"),
    ("get", "/api/v1/projects/beta/taxonomy/versions"),
    ("get", "/api/v1/projects/beta/taxonomy/versions/1"),
    ("get", "/api/v1/projects/beta/taxonomy/versions/1/export"),
    ("post", "/api/v1/projects/beta/taxonomy/draft/labels"),
    ("post", "/api/v1/projects/beta/taxonomy/draft/publish"),
    ("get", "/api/v1/projects/beta/members"),
    ("post", "/api/v1/projects/beta/tokens"),
    ("get", "/api/v1/projects/beta/whoami"),
]


@pytest.mark.smoke
@pytest.mark.parametrize(("method", "url"), FOREIGN_PAGES)
def test_member_of_a_cannot_read_or_write_project_b_pages(annotator_page, other_project, method, url):
    response = getattr(annotator_page, method)(url, {"key": "x", "name": "x"} if method == "post" else None)
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "url"), FOREIGN_API)
def test_member_of_a_cannot_read_or_write_project_b_api(annotator_api, other_project, method, url):
    response = getattr(annotator_api, method)(url, {"name": "stolen"}, format="json")
    assert response.status_code == 404
    other_project.refresh_from_db()
    assert other_project.name == "Beta"


def test_project_b_is_not_listed_for_a_member_of_a(annotator_api, annotator_page, other_project):
    assert [p["slug"] for p in annotator_api.get("/api/v1/projects").json()] == ["alpha"]
    assert "/projects/beta/" not in annotator_page.get("/projects/").content.decode()


def test_anonymous_requests_are_refused(project):
    assert APIClient().get("/api/v1/projects/alpha").status_code == 401
    response = APIClient().get("/projects/alpha/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- Annotators may view the taxonomy but not edit it ------------------------------------------------


def test_annotator_views_taxonomy_pages_and_api(annotator_page, annotator_api, published):
    assert annotator_page.get("/projects/alpha/taxonomy/").status_code == 200
    page = annotator_page.get(f"/projects/alpha/taxonomy/v{published.number}/")
    assert page.status_code == 200 and "旅行" in page.content.decode()
    assert annotator_page.get(f"/projects/alpha/taxonomy/v{published.number}/export.json").status_code == 200
    assert annotator_api.get(f"/api/v1/projects/alpha/taxonomy/versions/{published.number}").status_code == 200
    assert annotator_api.get("/api/v1/projects/alpha/taxonomy/versions").status_code == 200


@pytest.mark.smoke
@pytest.mark.parametrize(
    "url",
    [
        "/projects/alpha/taxonomy/draft/labels/new/",
        "/projects/alpha/taxonomy/draft/labels/其他/edit/",
        "/projects/alpha/taxonomy/draft/labels/其他/delete/",
        "/projects/alpha/taxonomy/draft/publish/",
        "/projects/alpha/taxonomy/draft/discard/",
        "/projects/alpha/taxonomy/import/",
    ],
)
def test_annotator_cannot_edit_taxonomy_pages(annotator_page, project, url):
    assert annotator_page.post(url, {"key": "x", "name": "x"}).status_code == 403
    assert current_draft(project).labels.count() == 1


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/api/v1/projects/alpha/taxonomy/versions"),
        ("post", "/api/v1/projects/alpha/taxonomy/draft/labels"),
        ("patch", "/api/v1/projects/alpha/taxonomy/draft/labels/其他"),
        ("delete", "/api/v1/projects/alpha/taxonomy/draft/labels/其他"),
        ("post", "/api/v1/projects/alpha/taxonomy/draft/reorder"),
        ("post", "/api/v1/projects/alpha/taxonomy/draft/publish"),
        ("post", "/api/v1/projects/alpha/taxonomy/import"),
        ("delete", "/api/v1/projects/alpha/taxonomy/versions/1"),
    ],
)
def test_annotator_cannot_edit_taxonomy_api(annotator_api, project, method, url):
    response = getattr(annotator_api, method)(url, {"key": "x", "name": "x"}, format="json")
    assert response.status_code == 403
    assert current_draft(project).labels.count() == 1


def test_annotator_and_reviewer_cannot_manage_project(annotator_api, reviewer, project):
    reviewer_api = APIClient()
    reviewer_api.force_authenticate(reviewer)
    for client in (annotator_api, reviewer_api):
        assert client.patch("/api/v1/projects/alpha", {"name": "x"}, format="json").status_code == 403
        assert client.get("/api/v1/projects/alpha/members").status_code == 403
        assert client.post("/api/v1/projects/alpha/tokens", {"name": "t"}, format="json").status_code == 403
    assert not ApiToken.objects.exists()


# --- API tokens ---------------------------------------------------------------------------------------------


def _token_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


@pytest.mark.smoke
def test_revoked_token_stops_working_on_the_next_request(project):
    issued = create_api_token(project=project, name="client")
    client = _token_client(issued.secret)
    response = client.get("/api/v1/projects/alpha/whoami")
    assert response.status_code == 200
    assert response.json() == {"project": "alpha", "auth": "token", "token_prefix": issued.token.prefix}
    revoke_api_token(project=project, token_id=issued.token.id)
    assert client.get("/api/v1/projects/alpha/whoami").status_code == 401


def test_token_of_project_a_cannot_act_on_project_b(project, other_project):
    client = _token_client(create_api_token(project=project, name="client").secret)
    assert client.get("/api/v1/projects/beta/whoami").status_code == 404
    assert client.get("/api/v1/projects/beta").status_code == 403


def test_token_may_only_predict_even_in_its_own_project(project):
    client = _token_client(create_api_token(project=project, name="client").secret)
    assert client.get("/api/v1/projects/alpha").status_code == 403
    assert client.get("/api/v1/projects/alpha/taxonomy/versions").status_code == 403
    assert client.post("/api/v1/projects/alpha/tokens", {"name": "more"}, format="json").status_code == 403
    assert client.post("/api/v1/projects", {"slug": "gamma", "name": "G"}, format="json").status_code == 403
    assert client.get("/api/v1/projects").status_code == 403
    assert ApiToken.objects.count() == 1


def test_unknown_token_is_refused(project):
    assert _token_client("sc_not-a-real-token").get("/api/v1/projects/alpha/whoami").status_code == 401


def test_tokens_are_stored_hashed(project):
    issued = create_api_token(project=project, name="client")
    stored = ApiToken.objects.get(pk=issued.token.pk)
    row = ApiToken.objects.filter(pk=issued.token.pk).values().get()
    assert all(issued.secret not in str(value) for value in row.values())
    assert stored.token_hash != issued.secret and len(stored.token_hash) == 64
    assert issued.secret.startswith(stored.prefix)


def test_token_use_records_last_used(project):
    issued = create_api_token(project=project, name="client")
    assert _token_client(issued.secret).get("/api/v1/projects/alpha/whoami").status_code == 200
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None


def test_token_belongs_to_the_owner_who_created_it(project, owner, make_user):
    """A token works while its creator is an active owner of the project; removing them ends it at once."""
    from labeling.models import Role
    from labeling.services.projects import add_member, remove_member

    second_owner = make_user("second_owner")
    add_member(project=project, user=second_owner, role=Role.OWNER)
    client = _token_client(create_api_token(project=project, name="client", created_by=second_owner).secret)
    assert client.get("/api/v1/projects/alpha/whoami").status_code == 200
    remove_member(project=project, user=second_owner, role=Role.OWNER)
    assert client.get("/api/v1/projects/alpha/whoami").status_code == 401
    owner_api = APIClient()
    owner_api.force_authenticate(owner)
    listed = owner_api.get("/api/v1/projects/alpha/tokens").json()
    assert [(t["name"], t["is_active"], t["usable"]) for t in listed] == [("client", True, False)]
    add_member(project=project, user=second_owner, role=Role.OWNER)
    assert client.get("/api/v1/projects/alpha/whoami").status_code == 200
    second_owner.is_active = False
    second_owner.save()
    assert client.get("/api/v1/projects/alpha/whoami").status_code == 401
    second_owner.delete()
    assert not ApiToken.objects.filter(name="client", project=project).exists()


def test_token_created_without_a_person_works_until_revoked(project):
    client = _token_client(create_api_token(project=project, name="service").secret)
    assert client.get("/api/v1/projects/alpha/whoami").status_code == 200


@pytest.mark.parametrize("path", ["/projects/{slug}/", "/api/v1/projects/{slug}/whoami"])
def test_a_foreign_project_reads_exactly_like_a_missing_one(annotator_page, other_project, path):
    foreign = annotator_page.get(path.format(slug=other_project.slug))
    missing = annotator_page.get(path.format(slug="no-such-slug"))
    assert foreign.status_code == missing.status_code == 404
    bodies = [r.content.decode().replace(slug, "SLUG") for r, slug in ((foreign, "beta"), (missing, "no-such-slug"))]
    assert bodies[0] == bodies[1]
    if path.startswith("/api/"):
        assert foreign.json()["error"]["message"] == "No such project."
