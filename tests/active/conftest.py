from __future__ import annotations

import pytest
import torch

from modeling.services.serving import forget_loaded_models
from tests.modeling.route1 import scene_texts


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
    from modeling.engine.testing import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-backbone-al") / "tiny-bert"
    make_tiny_backbone(path, kind="encoder", texts=[text for text, _ in scene_texts(40)] + ["天气不错航班物流"])
    return path
