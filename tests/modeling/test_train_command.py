import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from modeling.models import ModelVersion


def test_train_command_trains_publishes_and_then_leaves_a_published_project_alone(scene_project, tiny_backbone):
    params = json.dumps({"backbone": str(tiny_backbone)})
    out = StringIO()
    call_command("train", project=scene_project.slug, params=params, publish=True, stdout=out)
    assert "published" in out.getvalue()
    published = ModelVersion.objects.get(project=scene_project, status=ModelVersion.Status.PUBLISHED)
    assert published.metrics["val"]["macro_f1"] >= 0

    out = StringIO()
    call_command("train", project=scene_project.slug, params=params, if_no_model=True, stdout=out)
    assert "nothing to do" in out.getvalue()
    assert ModelVersion.objects.filter(project=scene_project).count() == 1


def test_train_command_explains_what_is_wrong(project):
    with pytest.raises(CommandError, match="No project"):
        call_command("train", project="missing")
    with pytest.raises(CommandError, match=r"Expecting property name"):
        call_command("train", project=project.slug, params="{oops")
