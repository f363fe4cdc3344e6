"""resblock_fused (Triton) against resblock_fused_reference (PyTorch); the fused plan and the
triton_fused backend against the unfused ones.

On machines without a GPU this runs through the Triton interpreter (conftest sets
TRITON_INTERPRET=1); the `cuda` variants run every case in every dtype on a GPU.
"""

import numpy as np
import pytest
import torch

from srgan_fast.backends import TorchRunner, choose_backend, get_backend
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.plan import compile_plan, fuse_residual_blocks
from srgan_fast.reference import resblock_fused_reference, run_plan_reference

from ..conftest import TRITON_DEVICE, cuda_cases, diff_msg, gpu_configs, randomize_bn

kern = pytest.importorskip("srgan_fast.kernels.resblock_fused")
conv = pytest.importorskip("srgan_fast.kernels.conv2d_fused")

# (batch, H, W, C, programs): the interpreter's tile is 8x8, so 7x13 and 11x19 cross tile
# borders; programs=2 makes each program loop over several tiles, reusing its scratch slot
CASES = [
    (1, 1, 1, 16, None),  # 1x1 frame: every neighbour is padding
    (1, 7, 13, 16, None),  # crosses a tile border in W
    (3, 5, 6, 16, None),  # batch 3
    (1, 5, 6, 64, None),  # the body's 64 channels
    (1, 11, 19, 16, 2),  # crosses borders in H and W; 6 tiles on 2 programs
]
IDS = [f"b{c[0]}_{c[1]}x{c[2]}_c{c[3]}" + (f"_p{c[4]}" if c[4] else "") for c in CASES]
ATOL = {torch.float32: 2e-5}


def _make(n, h, w, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g) * 2 - 1  # activations of both signs
    w1 = torch.randn(c, c, 3, 3, generator=g) / (9 * c) ** 0.5
    w2 = torch.randn(c, c, 3, 3, generator=g) / (9 * c) ** 0.5
    b1 = torch.randn(c, generator=g) * 0.1
    b2 = torch.randn(c, generator=g) * 0.1
    a = torch.rand(c, generator=g) * 0.3
    return x, w1, b1, a, w2, b2


def _run_kernel(case, dtype, device, config=None):
    n, h, w, c, programs = case
    x, w1, b1, a, w2, b2 = _make(n, h, w, c)
    xd = x.permute(0, 2, 3, 1).contiguous().to(device, dtype)
    y = kern.resblock_fused(
        xd, conv.pack_weight(w1, dtype).to(device), b1.to(device), a.to(device),
        conv.pack_weight(w2, dtype).to(device), b2.to(device), 3, programs=programs, config=config,
    )  # fmt: skip
    assert y.dtype == dtype and y.shape == xd.shape
    return y.permute(0, 3, 1, 2).cpu()


def _reference(case, dtype=torch.float32, device="cpu"):
    n, h, w, c, _ = case
    x, w1, b1, a, w2, b2 = (t.to(device, dtype) for t in _make(n, h, w, c))
    return resblock_fused_reference(x, w1, b1, a, w2, b2).cpu()


def _check(case, dtype, device, config=None):
    got = _run_kernel(case, dtype, device, config)
    want = _reference(case)  # CPU fp32: never TF32
    if dtype == torch.float32:
        assert torch.allclose(got, want, atol=ATOL[dtype], rtol=1e-5), diff_msg(got, want)
        return
    # flash-attention's rule: our error vs fp32 at most twice PyTorch's own error in this dtype
    theirs = (_reference(case, dtype, device).float() - want).abs().max().item()
    ours = (got.float() - want).abs().max().item()
    assert ours <= 2 * theirs + 1e-6, f"ours {ours:.3e} vs PyTorch {dtype} {theirs:.3e}; " + diff_msg(got, want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_resblock_fused_fp32(case):
    _check(case, torch.float32, TRITON_DEVICE)


def test_resblock_fused_gpu_like_tiling():
    # a non-square tile, several pixel chunks per phase (the border's 42 pixels in 3 chunks),
    # several N blocks and K chunks with a partial last one (C = 40 = 16 + 16 + 8), 4 tiles on
    # 3 programs
    cfg = {"TILE_H": 4, "TILE_W": 5, "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}
    _check((1, 7, 8, 40, 3), torch.float32, TRITON_DEVICE, config=cfg)


def test_resblock_fused_fp16():
    _check(CASES[1], torch.float16, TRITON_DEVICE)


def test_resblock_fused_writes_into_out_and_reads_strided_views():
    x, w1, b1, a, w2, b2 = _make(1, 6, 7, 16)
    padded = torch.zeros(1, 6, 10, 16)
    padded[:, :, :7] = x.permute(0, 2, 3, 1)
    xd = padded.to(TRITON_DEVICE)[:, :, :7]  # rows of 10 pixels, 7 used
    out = torch.full((1, 6, 7, 16), float("nan"), device=TRITON_DEVICE)
    dev = TRITON_DEVICE
    y = kern.resblock_fused(xd, conv.pack_weight(w1).to(dev), b1.to(dev), a.to(dev), conv.pack_weight(w2).to(dev),
                            b2.to(dev), out=out)  # fmt: skip
    assert y.data_ptr() == out.data_ptr()
    want = resblock_fused_reference(x, w1, b1, a, w2, b2).permute(0, 2, 3, 1)
    assert torch.allclose(y.cpu(), want, atol=2e-5), diff_msg(y.cpu(), want)


def test_resblock_fused_checks_inputs():
    x = torch.rand(1, 4, 4, 16)
    w = conv.pack_weight(torch.randn(16, 16, 3, 3))
    z = torch.zeros(16)
    with pytest.raises(ValueError, match="K\\*K\\*C"):
        kern.resblock_fused(x, w, z, z, conv.pack_weight(torch.randn(16, 16, 5, 5)), z)
    with pytest.raises(ValueError, match="b2 must be"):
        kern.resblock_fused(x, w, z, z, w, torch.zeros(8))
    with pytest.raises(ValueError, match="float16"):
        kern.resblock_fused(x.half(), w, z, z, w, z)
    with pytest.raises(ValueError, match="unit channel stride"):
        kern.resblock_fused(x.permute(0, 3, 1, 2), w, z, z, w, z)
    with pytest.raises(ValueError, match="odd kernel"):
        kern.resblock_fused(x, w, z, z, w, z, k=2)
    with pytest.raises(ValueError, match="programs"):
        kern.resblock_fused(x, w, z, z, w, z, programs=0)


# ---------------------------------------------------------------------------- the fused plan


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(Generator("tiny_x4"))


def test_fuse_residual_blocks_keeps_the_dataflow(tiny):
    plan = compile_plan(tiny)
    before = plan.describe()
    fused = fuse_residual_blocks(plan)
    assert plan.describe() == before  # the plan given is not changed
    assert [op.fn for op in fused.ops].count("resblock_fused") == tiny.config.num_blocks
    assert "block_conv1" not in fused.describe() and "block_conv2" not in fused.describe()
    assert fused.halo == plan.halo and fused.receptive_radius == plan.receptive_radius
    assert fused.macs_per_lr_pixel() == plan.macs_per_lr_pixel() and fused.model_macs == plan.model_macs
    # the block's intermediate is gone: one 16-channel LR buffer fewer
    assert fused.activation_elems_per_lr_pixel() == plan.activation_elems_per_lr_pixel() - 16
    x = torch.rand(2, 3, 9, 11)
    got, want = run_plan_reference(fused, x), run_plan_reference(plan, x)
    assert torch.allclose(got, want, atol=1e-6), diff_msg(got, want)
    # nothing left to fuse: the same ops again
    assert fuse_residual_blocks(fused).describe() == fused.describe()


def test_torch_runner_runs_fused_plans(tiny):
    plan = compile_plan(tiny)
    x = torch.rand(1, 9, 11, 3)
    want = TorchRunner(plan, "cpu", torch.float32)(x, False)
    got = TorchRunner(fuse_residual_blocks(plan), "cpu", torch.float32)(x, False)
    assert torch.allclose(got, want, atol=1e-6), diff_msg(got, want)


def test_triton_fused_is_never_auto():
    # what "auto" picks where it could run (a CUDA device; nothing is launched): never the candidate
    assert choose_backend("auto", torch.device("cuda")).name == "triton"
    assert choose_backend("auto", torch.device("cpu")).name == "native"  # the static rule on a CPU
    assert get_backend("triton_fused").bench_devices == ("cuda",)  # but the bench times it


def test_whole_network_triton_fused_equals_torch(tiny):
    x = np.random.default_rng(0).random((2, 9, 11, 3), dtype=np.float32)
    want = Engine(tiny, backend="torch").upscale(x)
    got = Engine(tiny, backend="triton_fused", device=TRITON_DEVICE).upscale(x)
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
    # uint8 in and out, against the unfused triton backend: the same bytes give or take a level
    xu = (x * 255).round().astype(np.uint8)
    a = Engine(tiny, backend="triton", device=TRITON_DEVICE).upscale(xu)
    b = Engine(tiny, backend="triton_fused", device=TRITON_DEVICE).upscale(xu)
    assert a.dtype == b.dtype == np.uint8 and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_tiled_equals_untiled_triton_fused(tiny):
    x = np.random.default_rng(1).random((1, 13, 10, 3), dtype=np.float32)
    full = Engine(tiny, backend="triton_fused", device=TRITON_DEVICE).upscale(x)
    tiled = Engine(tiny, backend="triton_fused", device=TRITON_DEVICE, tile=7).upscale(x)
    assert np.abs(full - tiled).max() <= 1e-5, np.abs(full - tiled).max()


# ---------------------------------------------------------------------------- on a GPU


@cuda_cases(CASES, IDS)
def test_resblock_fused_cuda(case, dtype):
    _check(case, dtype, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("cfg", range(len(kern._GPU_CONFIGS)))
def test_resblock_fused_every_autotune_config_cuda(cfg):
    """Each config autotuning may pick, forced, for parity (fp16, bf16; fp32 IEEE)."""
    config = gpu_configs(kern)[cfg]
    for case in [(2, 37, 45, 64, None), (1, 33, 20, 64, 3)]:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            _check(case, dtype, "cuda", config=config)
