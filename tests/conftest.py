"""Shared fixtures: seeded RNGs, the dataset folder (skips cleanly without it), GPU skips."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

# Triton kernels run through the interpreter on machines without a GPU. This must be set
# before triton is first imported (torch does not import it on its own).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
else:
    # one fixed kernel config, as benchmarks/gpu_suite.sh runs the cuda tests: autotuning every
    # small test shape would cost minutes of compiles (set SRGAN_FAST_AUTOTUNE=1 to include it)
    os.environ.setdefault("SRGAN_FAST_AUTOTUNE", "0")
# backend="auto" on a CPU times torch against ONNX Runtime at the first frame (srgan_fast.calibrate):
# in the suite that would make results depend on the machine's load and write ~/.cache; tests of
# the calibration turn it on for themselves
os.environ.setdefault("SRGAN_FAST_CALIBRATE", "0")
if os.environ.get("TRITON_INTERPRET") == "1":
    # every interpreted kernel's loads and stores must lie in its arguments' storage: reads past a
    # tensor that a GPU would make fail here too (tests/kernels/test_interpreter_bounds.py)
    from .kernels.test_interpreter_bounds import install as _install_bounds_check

    _install_bounds_check()

from srgan_fast.quality.datasets import data_root

# Where the default suite runs Triton kernels: compiled on the GPU when there is one, else on
# CPU tensors through the interpreter. Without the interpreter Triton cannot launch on CPU
# tensors, so tests must not hard-code device="cpu" for the triton backend.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


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


def randomize_bn(model, seed=0):
    """Randomise what a freshly built model keeps uniform, so the plan's folding and expansion are
    really exercised: BN statistics with running variances ~1e-4 (BN's eps of 1e-5 then moves each
    scale by ~5%: a dropped eps shows) and gains scaled to match (activations stay O(1)), and every
    PReLU slope per channel in [0, 0.5] (a slope expanded in the wrong order shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                var = (torch.rand(c, generator=g) * 1.5 + 0.5) * 1e-4
                m.running_mean.copy_(torch.rand(c, generator=g) * 0.04 - 0.02)
                m.running_var.copy_(var)
                m.weight.copy_(var.sqrt() * (torch.rand(c, generator=g) + 0.5))
                m.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
    return model.eval()


def save_tiny_x4(folder, seed=0) -> str:
    """A tiny_x4 generator with random BN statistics, saved in `folder`: its path."""
    from srgan_fast.families.srresnet.arch import Generator
    from srgan_fast.weights import save_generator

    torch.manual_seed(seed)
    return str(save_generator(randomize_bn(Generator("tiny_x4")), Path(folder) / "tiny_x4.safetensors"))


@pytest.fixture(scope="module")
def model():
    """The bundled srresnet_x4, loaded once per test module (a module's own `model` overrides it)."""
    from srgan_fast.weights import load_generator

    return load_generator("srresnet_x4")


# the CLI in-process (tests/contracts/test_hostile_inputs.py, tests/contracts/test_reliability.py)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in-process; a user error must print exactly one line and no traceback."""
    from srgan_fast.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    if rc != 0:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return rc, out, err


def one_line_error(capsys, *argv, code=2) -> str:
    """The CLI's one stderr line for a run that must fail with exit `code`."""
    rc, _, err = cli(capsys, *argv)
    assert rc == code, (rc, err)
    return err


# kernel tests (tests/kernels/test_conv2d_fused.py and test_resblock_fused.py): every case in every dtype on a GPU


def cuda_cases(cases, ids):
    """Mark a kernel test `cuda` and parametrize it over `cases` and fp32/fp16/bf16 (`case`, `dtype`)."""
    dtypes = pytest.mark.parametrize(
        "dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"]
    )
    return lambda fn: pytest.mark.cuda(pytest.mark.parametrize("case", cases, ids=ids)(dtypes(fn)))


def gpu_configs(kern):
    """Each config a kernel's autotuning may pick, as the `config=` dict that forces it."""
    return [dict(c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages) for c in kern._GPU_CONFIGS]


def diff_msg(got, want):
    """Max and mean abs difference, and where the max is (an index of `got`'s shape)."""
    d = (got.double() - want.double()).abs()
    at = tuple(int(i) for i in np.unravel_index(int(d.argmax()), d.shape)) if d.numel() else ()
    return f"max abs {d.max().item():.3e} at {at}, mean abs {d.mean().item():.3e}"


# frames between the model (NCHW torch) and the engine (NHWC numpy), for the model families' tests


def model_output(m, x):
    """A [0, 1]-range family's module output, clamped as the engine clamps it."""
    with torch.no_grad():
        return m(x).clamp(0, 1)


def to_nhwc(x):
    return x.permute(0, 2, 3, 1).numpy()


def to_nchw(y):
    return torch.from_numpy(np.ascontiguousarray(y)).permute(0, 3, 1, 2)
