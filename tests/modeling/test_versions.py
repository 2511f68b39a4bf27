from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from modeling.models import ModelVersion
from modeling.services import versions
from sceneclf_site.api_errors import ConflictError, ServiceError
from tests.modeling.route1 import start_and_run


def _version(project, **kwargs) -> ModelVersion:
    run = start_and_run(project, route="tfidf", **kwargs)
    assert run.status == "succeeded", run.error
    return run.model_version


@pytest.mark.django_db
def test_publish_rollback_and_archive(scene_project):
    v1, v2 = _version(scene_project), _version(scene_project)

    versions.publish_model_version(version=v1)
    versions.publish_model_version(version=v2)
    v1.refresh_from_db()
    assert v1.status == ModelVersion.Status.ARCHIVED
    assert ModelVersion.objects.get(status="published") == v2

    rolled = versions.rollback_model(project=scene_project)
    assert rolled == v1
    v2.refresh_from_db()
    assert (v1.__class__.objects.get(pk=v1.pk).status, v2.status) == ("published", "archived")

    with pytest.raises(ConflictError, match="is the champion"):
        versions.archive_model_version(version=ModelVersion.objects.get(pk=v1.pk))
    v3 = _version(scene_project)
    assert versions.archive_model_version(version=v3).status == ModelVersion.Status.ARCHIVED


@pytest.mark.django_db
def test_rollback_without_history_is_a_conflict(scene_project):
    versions.publish_model_version(version=_version(scene_project))
    with pytest.raises(ConflictError, match="No earlier"):
        versions.rollback_model(project=scene_project)


@pytest.mark.django_db
def test_tampered_artifacts_cannot_be_published(scene_project):
    version = _version(scene_project)
    calibration = Path(version.artifacts_dir) / "calibration.json"
    calibration.write_text(calibration.read_text().replace("temperature", "temperaturE"))

    with pytest.raises(ServiceError, match="do not verify"):
        versions.publish_model_version(version=version)
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.CANDIDATE


@pytest.mark.django_db
def test_database_allows_only_one_published_version(scene_project):
    v1, v2 = _version(scene_project), _version(scene_project)
    versions.publish_model_version(version=v1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(status="published")


@pytest.mark.django_db
def test_version_numbers_increase_per_project(scene_project):
    numbers = [_version(scene_project).number for _ in range(3)]
    assert numbers == [1, 2, 3]
