"""An owner invites a new person by a one-time link: hashed, expiring, used once; the invitee sets a password."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.test import Client

from labeling.authentication import hash_token
from labeling.models import Invitation, Membership


def _invite(owner_page, role: str = "reviewer") -> str:
    response = owner_page.post("/projects/alpha/members/invite/", {"role": role})
    assert response.status_code == 302 and response["Location"] == "/projects/alpha/members/"
    page = owner_page.get("/projects/alpha/members/").content.decode()
    link = page.split('id="invite-link" readonly value="')[1].split('"')[0]
    assert link not in owner_page.get("/projects/alpha/members/").content.decode()  # shown once
    return link.split("/invite/")[1].rstrip("/")


def test_invitee_sets_a_password_and_joins_with_the_role_once(owner_page, project):
    secret = _invite(owner_page)
    invitation = Invitation.objects.get(project=project)
    assert invitation.token_hash == hash_token(secret) and secret not in invitation.token_hash
    guest = Client()
    assert guest.get(f"/invite/{secret}/").status_code == 200
    form = {"username": "newcomer", "password": "a long passphrase 42", "password_again": "a long passphrase 42"}
    response = guest.post(f"/invite/{secret}/", form)
    assert response.status_code == 302 and response["Location"] == "/projects/alpha/"
    user = get_user_model().objects.get(username="newcomer")
    assert user.check_password("a long passphrase 42")
    assert list(Membership.objects.filter(user=user).values_list("role", flat=True)) == ["reviewer"]
    assert guest.get("/projects/alpha/").status_code == 200  # logged in
    again = Client().post(f"/invite/{secret}/", {**form, "username": "second"})
    assert again.status_code == 404 and not get_user_model().objects.filter(username="second").exists()


def test_expired_or_mistyped_links_do_nothing(owner_page, project):
    secret = _invite(owner_page, role="annotator")
    Invitation.objects.update(expires_at=Invitation.objects.get().created_at - timedelta(seconds=1))
    assert Client().get(f"/invite/{secret}/").status_code == 404
    assert Client().get("/invite/not-a-real-secret/").status_code == 404


def test_a_taken_username_or_short_password_is_refused_and_the_link_stays_valid(owner_page, project, owner):
    secret = _invite(owner_page)
    guest = Client()
    form = {"username": owner.username, "password": "x" * 12, "password_again": "x" * 12}
    taken = guest.post(f"/invite/{secret}/", form)
    assert taken.status_code == 200 and "taken" in taken.content.decode()
    short = guest.post(f"/invite/{secret}/", {"username": "fresh", "password": "abc", "password_again": "abc"})
    assert short.status_code == 200 and not get_user_model().objects.filter(username="fresh").exists()
    assert Invitation.objects.get().used_at is None


def test_only_owners_invite(annotator_page, project):
    assert annotator_page.post("/projects/alpha/members/invite/", {"role": "owner"}).status_code == 403
    assert not Invitation.objects.exists()
