"""Shared test settings: deterministic, single-threaded where it helps two CPU cores."""

import os

import pytest
import torch

os.environ.setdefault("ROADMAP_QUIET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
