"""An owner creates a member's account directly, with a first password and a role (annotator by default)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client

from labeling.models import Membership, Role


def test_owner_creates_an_account_that_can_sign_in(owner_page, project):
    page = owner_page.get("/projects/alpha/members/").content.decode()
    assert 'id="create-account"' in page
    assert '<option value="annotator" selected>' in page.split('id="create-account"')[1]
    form = {"username": "zhangwei", "password": "a long passphrase 42", "role": "annotator"}
    response = owner_page.post("/projects/alpha/members/create/", form)
    assert response.status_code == 302 and response["Location"] == "/projects/alpha/members/"
    user = get_user_model().objects.get(username="zhangwei")
    assert Membership.objects.filter(project=project, user=user, role=Role.ANNOTATOR).exists()
    assert "zhangwei" in owner_page.get("/projects/alpha/members/").content.decode()
    assert user.check_password("a long passphrase 42")


def test_taken_names_and_weak_passwords_are_refused_with_a_message(owner_page, project, annotator):
    taken = owner_page.post(
        "/projects/alpha/members/create/",
        {"username": "Annotator", "password": "a long passphrase 42", "role": "reviewer"},
        follow=True,
    ).content.decode()
    assert taken.count("is taken or empty") == 1
    weak = owner_page.post(
        "/projects/alpha/members/create/", {"username": "li", "password": "123", "role": "annotator"}, follow=True
    ).content.decode()
    assert "too short" in weak or "too common" in weak
    assert not get_user_model().objects.filter(username="li").exists()


def test_only_owners_create_accounts(project, annotator):
    client = Client()
    client.force_login(annotator)
    form = {"username": "sneaky", "password": "a long passphrase 42", "role": "owner"}
    assert client.post("/projects/alpha/members/create/", form).status_code == 403
    assert not get_user_model().objects.filter(username="sneaky").exists()
