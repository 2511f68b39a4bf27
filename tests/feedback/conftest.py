from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.services.projects import create_api_token
from modeling.models import ModelVersion
from tests.modeling.conftest import _one_thread_and_own_dirs, no_auto_retrain, scene_project, tiny_backbone  # noqa: F401
from tests.modeling.route1 import start_and_run, tiny_params


@pytest.fixture
def published_model(scene_project, tiny_backbone) -> ModelVersion:  # noqa: F811
    # Precision target 0.999 on val: most texts of a tiny random backbone abstain, which these tests need.
    run = start_and_run(scene_project, params=tiny_params(tiny_backbone), auto_publish=True)
    assert run.status == "succeeded", run.error
    return run.model_version


@pytest.fixture
def token_client(scene_project, owner):  # noqa: F811
    issued = create_api_token(project=scene_project, name="client", created_by=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued.secret}")
    client.issued = issued
    return client
