"""The model page warns when the abstention target was out of reach, instead of silently abstaining."""

from __future__ import annotations

import pytest

from modeling.services import training
from tests.modeling.route1 import tiny_params


@pytest.mark.django_db
def test_an_unreachable_precision_target_is_said_on_the_model_page(scene_project, tiny_backbone, client, owner):
    # A tiny random backbone cannot reach precision 0.999: before, tau climbed until almost nothing was
    # answered, and nothing said so.
    scene_project.abstain_target_kind = "precision"
    scene_project.abstain_target = 0.999
    scene_project.save()
    params = {**tiny_params(tiny_backbone), "coverage_floor": 0.7, "ood_kind": "none"}
    run = training.start_training_run(project=scene_project, params=params)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.metrics["target_met_on_val"] is False
    assert version.metrics["val"]["abstention"]["coverage"] >= 0.7
    assert "cannot be reached" in version.metrics["abstention_warning"]

    client.force_login(owner)
    page = client.get(f"/projects/{scene_project.slug}/models/").content.decode()
    assert "cannot be reached" in page and "70%" in page
