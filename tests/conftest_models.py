"""Shared fixtures for the model tests (imported by test_model_families.py and test_sd_models.py)."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """Pixel/activation comparisons and timings must not depend on how many cores are free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def hash_cache(tmp_path):
    """A private hash cache file, so tests never touch the real data dir's cache.json."""
    return str(tmp_path / "cache.json")
