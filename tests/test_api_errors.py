import pytest


@pytest.mark.smoke
def test_no_credentials_is_401_not_a_hidden_404(client, project):
    for path in ("models", "training-runs", "taxonomy/versions", "items"):
        response = client.get(f"/api/v1/projects/{project.slug}/{path}")
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.smoke
def test_non_member_and_short_role_get_404_and_403_with_their_codes(client, project, annotator, make_user):
    client.force_login(make_user("stranger"))
    response = client.get(f"/api/v1/projects/{project.slug}/items")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    client.force_login(annotator)
    response = client.post(f"/api/v1/projects/{project.slug}/taxonomy/draft/labels", {"key": "x", "name": "x"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


@pytest.mark.smoke
def test_api_docs_are_served_without_a_cdn(client, db):
    page = client.get("/api/v1/docs").content.decode()
    assert "cdn.jsdelivr" not in page and "swagger-ui" in page


def test_patching_an_unknown_or_read_only_project_field_is_refused(client, project, owner):
    client.force_login(owner)
    response = client.patch(f"/api/v1/projects/{project.slug}", {"slug": "other"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_field"
    project.refresh_from_db()
    assert project.slug == "alpha"
