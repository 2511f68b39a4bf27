from __future__ import annotations

import pytest

from tests.modeling.conftest import _one_thread_and_own_dirs  # noqa: F401  (autouse: same isolation)
from tests.modeling.route1 import scene_texts


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    from tests.engine.tiny import make_tiny_backbone

    path = tmp_path_factory.mktemp("tiny-backbone-al") / "tiny-bert"
    make_tiny_backbone(path, kind="encoder", texts=[text for text, _ in scene_texts(40)] + ["天气不错航班物流"])
    return path
