"""Shared fixtures: users per role and a project with a published taxonomy.

Django is imported inside the fixtures, not here: the engine's tests (tests/engine) run without Django
(``pytest tests/engine -p no:django``), and this file is loaded for them too."""

from __future__ import annotations

import pytest


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def _make(username: str, password: str = "pw-for-tests"):
        return get_user_model().objects.create_user(username=username, password=password)

    return _make


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def annotator(make_user):
    return make_user("annotator")


@pytest.fixture
def reviewer(make_user):
    return make_user("reviewer")


@pytest.fixture
def project(owner, annotator, reviewer):
    from labeling.models import Role
    from labeling.services.projects import add_member, create_project

    project = create_project(slug="alpha", name="Alpha", owner=owner)
    add_member(project=project, user=annotator, role=Role.ANNOTATOR)
    add_member(project=project, user=reviewer, role=Role.REVIEWER)
    return project


@pytest.fixture(autouse=True)
def _empty_cache(request):
    """Throttle counters start from zero in every test (only where Django runs)."""
    if request.config.pluginmanager.has_plugin("django"):
        from django.core.cache import cache

        cache.clear()
    yield


@pytest.fixture(autouse=True)
def _default_language():
    """A request in zh-hans leaves that language active in the test thread; commands then print in it."""
    yield
    from django.conf import settings

    if settings.configured:  # not under `-p no:django` (the engine's tests)
        from django.utils import translation

        translation.activate("en")
