"""Fixtures shared by the generation tests."""
from __future__ import annotations

import pytest
import torch

from tests.factories import make_tiny_checkpoint


@pytest.fixture(scope="module")
def sd1_model(tmp_path_factory):
    """A tiny random SD1 checkpoint in the original single-file layout, loaded in fp32 (one per test module)."""
    from modules import sd_models

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), "sd1")
    return sd_models.load_model(str(path), torch.device("cpu"), torch.float32)
