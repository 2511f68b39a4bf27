"""The model page warns when the abstention target was out of reach, instead of silently abstaining."""

from __future__ import annotations

import pytest

from tests.modeling.route1 import start_and_run, tiny_params


@pytest.mark.django_db
def test_an_unreachable_precision_target_is_said_on_the_model_page(scene_project, tiny_backbone, client, owner):
    # Before, tau climbed until almost nothing was answered, and nothing said so.
    from labeling.models import GoldLabel

    # Wrong validation labels (as in CIC's dev split): every third val text is labelled 其他.
    val_gold = GoldLabel.objects.filter(item__project=scene_project, item__split="val").exclude(label_key="其他")
    GoldLabel.objects.filter(pk__in=list(val_gold.values_list("pk", flat=True))[::3]).update(label_key="其他")
    scene_project.abstain_target_kind = "precision"
    scene_project.abstain_target = 0.95
    scene_project.save()
    params = {**tiny_params(tiny_backbone), "coverage_floor": 0.9, "ood_kind": "none"}
    run = start_and_run(scene_project, params=params)
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.metrics["target_met_on_val"] is False
    assert version.metrics["val"]["abstention"]["coverage"] >= 0.9
    assert "cannot be reached" in version.metrics["abstention_warning"]

    client.force_login(owner)
    page = client.get(f"/projects/{scene_project.slug}/models/").content.decode()
    assert "cannot be reached" in page and "90%" in page
