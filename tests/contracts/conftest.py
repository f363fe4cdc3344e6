"""Fixtures the contract tests share."""

import pytest
import torch

from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.weights import save_generator


@pytest.fixture()
def tiny_model(tmp_path):
    """A tiny_x4 generator (seed 3) saved as tiny.safetensors: its path."""
    torch.manual_seed(3)
    return save_generator(Generator("tiny_x4"), tmp_path / "tiny.safetensors")
