from __future__ import annotations

import pytest
import torch

from modeling.services.serving import forget_loaded_models
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts


@pytest.fixture(autouse=True)
def _one_thread_and_own_dirs(settings, tmp_path):
    torch.set_num_threads(1)
    settings.TORCH_THREADS = 1
    settings.FEATURE_CACHE_DIR = tmp_path / "features"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    forget_loaded_models()
    yield
    forget_loaded_models()


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    from tests.engine.tiny import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-backbone") / "tiny-bert"
    make_tiny_backbone(path, kind="encoder", texts=[text for text, _ in scene_texts(40)])
    return path


@pytest.fixture
def no_auto_retrain(project):
    """In transactional tests the gold labels' commit hooks run: keep them from starting retrains."""
    project.retrain_every_n_gold = 1_000_000
    project.save(update_fields=["retrain_every_n_gold"])
    return project


@pytest.fixture
def scene_project(project):
    """The conftest project with a published scene taxonomy and ~110 gold items split train/val/test."""
    taxonomy = publish_scene_taxonomy(project)
    add_gold_items(project, scene_texts(20), taxonomy)
    return project
