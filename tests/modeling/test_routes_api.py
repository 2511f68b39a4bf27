"""The registry through the app: GET /api/v1/routes, the training form, the OpenAPI schema, and unknown or
invalid parameters as a 400 (API) or a CommandError (CLI) that names the key."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from modeling.engine.routes import route_names
from modeling.models import TrainingRun


@pytest.fixture
def api(owner):
    client = APIClient()
    client.force_authenticate(owner)
    return client


@pytest.mark.django_db
def test_routes_endpoint_lists_every_registered_route_with_its_parameters(api):
    body = api.get("/api/v1/routes").json()
    assert [route["name"] for route in body] == route_names()
    probe = next(route for route in body if route["name"] == "probe")
    assert probe["title"] and probe["help"] and probe["needs_training"]
    params = {param["name"]: param for param in probe["params"]}
    assert (
        params["head_kind"]["choices"] == ["linear", "mlp", "sklearn_lr"] and params["head_kind"]["default"] == "linear"
    )
    assert params["hidden_dim"]["min"] == 8 and params["hidden_dim"]["type"] == "integer"
    assert params["hybrid"]["description"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "params", "key"),
    [("probe", {"head_knd": "mlp"}, "head_knd"), ("tfidf", {"tfidf_c": -1}, "tfidf_c"),
     ("probe", {"abstain_target": 2}, "abstain_target"), ("probe", {"budget_minutes": 0}, "budget_minutes")],
)  # fmt: skip
def test_unknown_or_invalid_params_are_a_400_naming_the_key(api, scene_project, route, params, key):
    response = api.post("/api/v1/projects/alpha/training-runs", {"route": route, "params": params}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_params" and key in error["message"]
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_an_unknown_route_is_a_400_naming_it(api, scene_project):
    response = api.post("/api/v1/projects/alpha/training-runs", {"route": "nope", "params": {}}, format="json")
    assert response.status_code == 400 and "nope" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_the_training_form_lists_the_routes_and_their_parameters(client, owner, scene_project):
    client.force_login(owner)
    html = client.get("/projects/alpha/models/").content.decode()
    for name in route_names():
        assert f'<option value="{name}">' in html
    assert "<code>hybrid_mode</code>" in html and "<code>tfidf_c</code>" in html


@pytest.mark.django_db
def test_the_openapi_schema_shows_each_routes_parameters(api):
    schema = api.get("/api/v1/schema?format=json").json()
    params = schema["components"]["schemas"]["TrainingRunCreate"]["properties"]["params"]
    titles = [option["title"] for option in params["anyOf"]]
    assert titles == [f"{name} params" for name in route_names()]
    assert "head_kind" in params["anyOf"][0]["properties"]


@pytest.mark.django_db
def test_evaluate_dataset_refuses_an_unknown_param_by_name(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": "b"}\n', encoding="utf-8")
    with pytest.raises(CommandError, match="head_knd"):
        call_command("evaluate_dataset", "--train", str(path), "--val", str(path), "--test", str(path),
                     "--params", '{"head_knd": "mlp"}')  # fmt: skip


@pytest.mark.django_db
def test_train_command_refuses_an_unknown_param_by_name(scene_project):
    with pytest.raises(CommandError, match="head_knd"):
        call_command("train", "--project", "alpha", "--params", '{"head_knd": "mlp"}')
