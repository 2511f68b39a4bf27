"""Fixtures for engine tests: tiny random backbones (fast) and the real model root (slow tests)."""

from pathlib import Path

import pytest
import torch

from tests.engine.tiny import make_tiny_backbone

torch.set_num_threads(1)

REAL_MODEL_ROOT = Path(__file__).resolve().parents[2] / "var" / "models"


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-encoder"), kind="encoder")


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-decoder"), kind="decoder")


@pytest.fixture(params=["encoder", "decoder"])
def tiny_backbone(request, tiny_encoder, tiny_decoder):
    return tiny_encoder if request.param == "encoder" else tiny_decoder
