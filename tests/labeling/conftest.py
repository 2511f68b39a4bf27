"""Fixtures for labeling tests: logged-in clients per role, a second project, a published taxonomy."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from labeling.models import Role
from labeling.selectors.taxonomy import current_draft
from labeling.services.projects import add_member, create_project
from labeling.services.taxonomy import add_label, publish_draft

SCENES = [
    {"key": "旅行", "name": "旅行", "hotkey": "1", "examples": ["机票改签怎么收费"]},
    {"key": "支付", "name": "支付", "hotkey": "2", "examples": ["付款一直失败"]},
    {"key": "物流", "name": "物流", "hotkey": "3", "examples": ["快递三天没更新"]},
]


def publish_scenes(project, labels=SCENES):  # type: ignore[no-untyped-def]
    """Fill the project's draft with `labels` and publish it; returns the published version."""
    draft = current_draft(project)
    for data in labels:
        add_label(draft=draft, data=data)
    return publish_draft(draft=draft).version


@pytest.fixture
def published(project):
    return publish_scenes(project)


@pytest.fixture
def other_owner(make_user):
    return make_user("other_owner")


@pytest.fixture
def other_project(other_owner):
    return create_project(slug="beta", name="Beta", owner=other_owner)


def _api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(user)
    return client


def _page(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_api(owner, project):
    return _api(owner)


@pytest.fixture
def annotator_api(annotator, project):
    return _api(annotator)


@pytest.fixture
def owner_page(owner, project):
    return _page(owner)


@pytest.fixture
def annotator_page(annotator, project):
    return _page(annotator)


@pytest.fixture
def page_client():
    return _page


@pytest.fixture
def add_role():
    def _add(project, user, role=Role.ANNOTATOR):  # type: ignore[no-untyped-def]
        return add_member(project=project, user=user, role=role)

    return _add
