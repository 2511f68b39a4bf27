from __future__ import annotations

import pytest

from tests.workspace.factories import make_items, publish_scenes


@pytest.fixture
def published(project):
    publish_scenes(project)
    return project


@pytest.fixture
def items(published):
    return make_items(published)


@pytest.fixture
def annotator2(make_user, project):
    from labeling.models import Role
    from labeling.services.projects import add_member

    user = make_user("annotator2")
    add_member(project=project, user=user, role=Role.ANNOTATOR)
    return user
