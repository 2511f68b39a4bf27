"""A trained version carries its INT8 quality gate (measured on its validation items), and the model page
says whether INT8 serving is allowed, with the figures it was decided on."""

from __future__ import annotations

import pytest

from tests.modeling.route1 import start_and_run, tiny_params


@pytest.mark.django_db
def test_the_model_page_shows_the_int8_gate_of_the_version(scene_project, tiny_backbone, client, owner):
    run = start_and_run(scene_project, params=tiny_params(tiny_backbone))
    assert run.status == "succeeded", run.error
    gate = run.model_version.metrics["serving"]["int8_gate"]
    assert gate["precision"] == "int8" and gate["n_val"] > 0
    assert gate["passed"] == (gate["reason"] is None)

    client.force_login(owner)
    page = client.get(f"/projects/{scene_project.slug}/models/").content.decode()
    assert 'data-testid="int8-gate"' in page
    assert ("INT8 serving allowed" if gate["passed"] else "INT8 serving refused") in page
    assert f"{gate['candidate_macro_f1']:.4f}" in page
