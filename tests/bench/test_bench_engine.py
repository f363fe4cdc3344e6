"""pytest-benchmark timings of the CPU engine path (small sizes), excluded from the default run:

    python -m pytest tests/bench -m bench --benchmark-only          # compare runs over time
    python -m pytest tests/bench -m bench --benchmark-autosave

Not assertions on speed (machines are shared and noisy): each benchmark also checks the
values it computed, so a broken fast path cannot produce a timing.
"""

import numpy as np
import pytest
import torch

from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import to_unit_range

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(0).random((1, 48, 48, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def want(model, frame):
    with torch.no_grad():
        return to_unit_range(model(torch.from_numpy(frame).permute(0, 3, 1, 2))).permute(0, 2, 3, 1).numpy()


def test_engine_torch_fp32_48px(benchmark, model, frame, want):
    eng = Engine(model, backend="torch")
    out = benchmark(eng.upscale, frame)
    assert np.abs(out - want).max() <= 1e-4


def test_eager_nchw_fp32_48px(benchmark, model, frame, want):
    x = torch.from_numpy(frame).permute(0, 3, 1, 2).contiguous()

    def run():
        with torch.inference_mode():
            return to_unit_range(model(x))

    out = benchmark(run).permute(0, 2, 3, 1).numpy()
    assert np.abs(out - want).max() <= 1e-5  # oneDNN may pick another algorithm per call
