"""Shared fixtures: seeded RNGs, the dataset folder (skips cleanly without it), GPU skips."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from srgan_fast.datasets import data_root


def pytest_addoption(parser):
    parser.addoption(
        "--data",
        default=None,
        help="datasets folder (default: $SRGAN_FAST_DATA or ../shared/datasets)",
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_suite.sh on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def datasets(pytestconfig):
    root = data_root(pytestconfig.getoption("--data"))
    if root is None:
        pytest.skip("datasets not found: pass --data DIR or set SRGAN_FAST_DATA (default ../shared/datasets)")
    return root


def need(root, *names):
    for n in names:
        if not (root / n).exists():
            pytest.skip(f"{root / n} is absent")
    return root


def torch_threads():
    return int(os.environ.get("SRGAN_FAST_TEST_THREADS", "2"))
