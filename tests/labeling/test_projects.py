"""Projects, members, settings and API tokens: REST and pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import ApiToken, GoldLabel, Item, Membership, Project, Role
from labeling.selectors.projects import project_stats
from labeling.selectors.taxonomy import current_draft
from labeling.services.projects import create_project, remove_member, update_project_settings
from sceneclf_site.api_errors import ConflictError, ServiceError


def _project_creator(make_user, username: str = "newcomer"):
    from django.contrib.auth.models import Group

    user = make_user(username)
    user.groups.add(Group.objects.get_or_create(name="project creators")[0])
    return user


def _api(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def test_annotator_without_the_right_cannot_create_a_project(annotator, page_client):
    response = _api(annotator).post("/api/v1/projects", {"slug": "gamma", "name": "Gamma"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    page = page_client(annotator)
    assert page.post("/projects/", {"slug": "delta", "name": "Delta"}).status_code == 403
    assert b"Create project" not in page.get("/projects/").content
    assert not Project.objects.filter(slug__in=["gamma", "delta"]).exists()


def test_staff_and_everyone_setting_may_create(make_user, settings):
    staff = make_user("staffer")
    staff.is_staff = True
    staff.save()
    assert _api(staff).post("/api/v1/projects", {"slug": "s1", "name": "S"}, format="json").status_code == 201
    plain = make_user("plain")
    assert _api(plain).post("/api/v1/projects", {"slug": "s2", "name": "S"}, format="json").status_code == 403
    settings.PROJECT_CREATORS = "everyone"
    assert _api(plain).post("/api/v1/projects", {"slug": "s2", "name": "S"}, format="json").status_code == 201


def test_project_creator_creates_a_project_and_becomes_its_owner(make_user, page_client):
    user = _project_creator(make_user)
    client = _api(user)
    response = client.post("/api/v1/projects", {"slug": "gamma", "name": "Gamma"}, format="json")
    assert response.status_code == 201 and response.json()["roles"] == ["owner"]
    project = Project.objects.get(slug="gamma")
    assert Membership.objects.filter(project=project, user=user, role=Role.OWNER).exists()
    assert current_draft(project).labels.filter(is_fallback=True).count() == 1
    again = client.post("/api/v1/projects", {"slug": "gamma", "name": "Again"}, format="json")
    assert again.status_code == 400 and again.json()["error"]["code"] == "duplicate"
    bad = client.post("/api/v1/projects", {"slug": "Bad Slug", "name": "x"}, format="json")
    assert bad.status_code == 400
    page = page_client(user).post("/projects/", {"slug": "delta", "name": "Delta"})
    assert page.status_code == 302 and page["Location"] == reverse("labeling:project_detail", args=["delta"])


def test_project_list_shows_member_projects_with_roles(owner_api, other_project):
    projects = owner_api.get("/api/v1/projects").json()
    assert [(p["slug"], p["roles"]) for p in projects] == [("alpha", ["owner"])]


def test_owner_patches_settings_and_bad_values_change_nothing(owner_api, project):
    response = owner_api.patch(
        "/api/v1/projects/alpha",
        {"overlap_k": 3, "abstain_target_kind": "coverage", "keep_raw_text": True},
        format="json",
    )
    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    assert (project.overlap_k, project.abstain_target_kind, project.keep_raw_text) == (3, "coverage", True)
    response = owner_api.patch("/api/v1/projects/alpha", {"agreement_threshold": 1.5, "name": "Renamed"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"agreement_threshold": "Must be between 0 and 1."}
    project.refresh_from_db()
    assert project.name == "Alpha"


def test_settings_service_refuses_read_only_fields(project):
    with pytest.raises(ServiceError, match="slug"):
        update_project_settings(project=project, slug="hijack")
    with pytest.raises(ServiceError):
        update_project_settings(project=project, abstain_target_kind="recall")


def test_members_add_list_and_remove(owner_api, project, make_user):
    make_user("carol")
    response = owner_api.post(
        "/api/v1/projects/alpha/members", {"username": "carol", "role": "reviewer"}, format="json"
    )
    assert response.status_code == 201
    membership_id = response.json()["id"]
    rows = {(m["username"], m["role"]) for m in owner_api.get("/api/v1/projects/alpha/members").json()}
    assert ("carol", "reviewer") in rows and ("owner", "owner") in rows
    unknown = owner_api.post(
        "/api/v1/projects/alpha/members", {"username": "nobody", "role": "annotator"}, format="json"
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_user"
    assert owner_api.delete(f"/api/v1/projects/alpha/members/{membership_id}").status_code == 204
    assert not Membership.objects.filter(pk=membership_id).exists()


def test_last_owner_cannot_be_removed(owner, project):
    with pytest.raises(ConflictError):
        remove_member(project=project, user=owner, role=Role.OWNER)
    assert Membership.objects.filter(project=project, user=owner, role=Role.OWNER).exists()


def test_token_api_create_list_revoke(owner_api, project):
    response = owner_api.post("/api/v1/projects/alpha/tokens", {"name": "crm"}, format="json")
    assert response.status_code == 201
    secret, token_id = response.json()["secret"], response.json()["token"]["id"]
    assert secret.startswith("sc_")
    listed = owner_api.get("/api/v1/projects/alpha/tokens").json()
    assert [t["name"] for t in listed] == ["crm"] and secret not in str(listed)
    revoked = owner_api.delete(f"/api/v1/projects/alpha/tokens/{token_id}").json()
    assert revoked["is_active"] is False and revoked["revoked_at"]
    assert owner_api.delete("/api/v1/projects/alpha/tokens/999999").status_code == 404


def test_token_page_shows_the_secret_once(owner_page, project):
    response = owner_page.post("/projects/alpha/tokens/", {"name": "crm"})
    assert response.status_code == 302 and response["Location"] == "/projects/alpha/tokens/"
    page = owner_page.get(response["Location"]).content.decode()
    token = ApiToken.objects.get(project=project)
    secret = page.split('id="token-secret" readonly value="')[1].split('"')[0]
    assert secret.startswith(token.prefix) and len(secret) > 20
    reloaded = owner_page.get("/projects/alpha/tokens/").content.decode()
    assert secret not in reloaded and ApiToken.objects.filter(project=project).count() == 1
    response = owner_page.post(f"/projects/alpha/tokens/{token.id}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_pages_render_for_the_owner_and_nav_hides_owner_links_from_annotators(owner_page, annotator_page, project):
    for name in ("project_detail", "members", "tokens", "project_settings", "taxonomy"):
        assert owner_page.get(reverse(f"labeling:{name}", args=[project.slug])).status_code == 200, name
    owner_view = owner_page.get("/projects/alpha/").content.decode()
    annotator_view = annotator_page.get("/projects/alpha/").content.decode()
    assert "/projects/alpha/members/" in owner_view
    assert "/projects/alpha/members/" not in annotator_view and "/projects/alpha/taxonomy/" in annotator_view
    assert annotator_page.get("/projects/alpha/members/").status_code == 403


def test_members_and_settings_pages_change_data(owner_page, project, make_user):
    make_user("dave")
    assert owner_page.post("/projects/alpha/members/", {"username": "dave", "role": "annotator"}).status_code == 302
    membership = Membership.objects.get(project=project, user__username="dave")
    assert owner_page.post(f"/projects/alpha/members/{membership.id}/remove/").status_code == 302
    assert not Membership.objects.filter(pk=membership.id).exists()
    form = {
        "name": "Alpha 2",
        "description": "",
        "overlap_k": "2",
        "agreement_share": "0.2",
        "agreement_threshold": "0.7",
        "show_model_suggestion": "on",
        "abstain_target_kind": "precision",
        "abstain_target": "0.95",
        "retrain_every_n_gold": "25",
        "pii_field_mode": "hash",
    }
    assert owner_page.post("/projects/alpha/settings/", form).status_code == 302
    project.refresh_from_db()
    assert project.pii_field_mode == "hash"
    assert (project.name, project.overlap_k, project.keep_raw_text, project.abstain_target) == (
        "Alpha 2",
        2,
        False,
        0.95,
    )
    response = owner_page.post("/projects/alpha/settings/", {**form, "overlap_k": "40"})
    assert response.status_code == 200 and "between 1 and 10" in response.content.decode()


def test_dashboard_counts_only_this_projects_data(owner_page, project, published):
    other = create_project(slug="unrelated", name="Unrelated")
    for index, target in enumerate([project, project, other]):
        text = f"synthetic {index}"
        item = Item.objects.create(project=target, text=text, normalized_text=text, text_hash=str(index))
        if target == project and index == 0:
            GoldLabel.objects.create(item=item, label_key="旅行", taxonomy=published, method="single")
    stats = project_stats(project)
    assert (stats["items"], stats["gold_labels"], stats["published_label_count"]) == (2, 1, 4)
    page = owner_page.get("/projects/alpha/").content.decode()
    items_card = page.split('id="stat-items"')[1].split("</section>")[0]
    gold_card = page.split('id="stat-gold"')[1].split("</section>")[0]
    assert ">2<" in items_card and ">1<" in gold_card and f"v{published.number}" in page


def test_openapi_schema_renders_with_the_labeling_endpoints(owner_api):
    response = owner_api.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/projects/{slug}/taxonomy/draft/labels/{key}" in paths
    assert "/api/v1/projects/{slug}/whoami" in paths
    assert "projectToken" in response.json()["components"]["securitySchemes"]


def test_whoami_with_a_session(owner_api, project):
    assert owner_api.get("/api/v1/projects/alpha/whoami").json() == {
        "project": "alpha",
        "auth": "session",
        "token_prefix": None,
    }


def test_add_member_form_defaults_to_annotator_and_shows_an_error_once(owner_page, project):
    page = owner_page.get("/projects/alpha/members/").content.decode()
    assert '<option value="annotator" selected>' in page
    response = owner_page.post("/projects/alpha/members/", {"username": "nobody-here", "role": "annotator"})
    page = response.content.decode()
    assert response.status_code == 200
    error = page.split('<ul class="errorlist nonfield">')[1].split("</ul>")[0]
    assert error and page.count(error) == 1
