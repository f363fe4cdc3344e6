"""The engine on a GPU (marker `cuda`; run by benchmarks/gpu_suite.sh): same parity rules as
on the CPU, on the bundled model and the bundled real photo (no dataset needed)."""

import numpy as np
import pytest
import torch

from srgan_fast.data import sample_path
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import to_unit_range
from srgan_fast.io.images import load_image
from srgan_fast.quality.metrics import imresize
from srgan_fast.reference import upscale_reference
from srgan_fast.weights import load_generator

from ..conftest import diff_msg

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def lr():
    return imresize(load_image(sample_path()), scale=0.25)  # 64x64 real photo


def ref01(model, x_nhwc):
    """fp32 reference on the CPU (no TF32 anywhere)."""
    with torch.no_grad():
        return to_unit_range(model.cpu()(torch.as_tensor(x_nhwc).permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_fp32_parity(model, lr, backend):
    x = lr.astype(np.float32)[None] / 255
    got = Engine(model, device="cuda", backend=backend).upscale(torch.from_numpy(x).cuda()).cpu()
    want = ref01(model, x)
    assert (got - want).abs().max() <= 1e-4, diff_msg(got, want)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_low_precision_flash_attention_rule(model, lr, dtype):
    x = lr.astype(np.float32)[None] / 255
    want = ref01(model, x)
    ours = Engine(model, device="cuda", dtype=dtype, backend="triton").upscale(torch.from_numpy(x).cuda()).cpu()
    td = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    m = load_generator("srresnet_x4").cuda().to(td).to(memory_format=torch.channels_last)
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).cuda().to(td).contiguous(memory_format=torch.channels_last)
        theirs = to_unit_range(m(xt).float()).permute(0, 2, 3, 1).cpu()
    e_ours, e_theirs = (ours - want).abs().max().item(), (theirs - want).abs().max().item()
    assert e_ours <= 2 * e_theirs, (e_ours, e_theirs)
    psnr = 10 * np.log10(1.0 / ((ours - want) ** 2).mean().item())
    assert psnr >= (50 if dtype == "fp16" else 40), psnr


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_uint8_within_one_level(model, lr, dtype):
    got = Engine(model, device="cuda", dtype=dtype, backend="triton").upscale(lr)
    want = upscale_reference(model.cpu(), lr)
    d = np.abs(got.astype(int) - want.astype(int))
    # the rule: within 1 level on >= 99.9% of pixels; fp32 also rarely differs at all
    assert (d <= 1).mean() >= 0.999, (d.max(), (d > 1).mean())
    if dtype == "fp32":
        assert d.max() <= 1 and (d > 0).mean() <= 1e-3, (d.max(), (d > 0).mean())
    print(f"uint8 {dtype}: {(d > 0).mean():.4%} of values differ, max {d.max()} level(s)")


def test_tiled_equals_untiled_and_batches(model, lr):
    x = torch.from_numpy(lr.astype(np.float32) / 255).cuda()
    e = Engine(model, device="cuda", backend="triton")
    full = e.upscale(x)
    tiled = Engine(model, device="cuda", backend="triton", tile=24, tile_batch=4).upscale(x)
    assert (full - tiled).abs().max() <= 1e-5, diff_msg(full, tiled)
    b = e.upscale(torch.stack([x, x.flip(0), x]))
    assert (b[0] - full).abs().max() <= 1e-5 and (b[2] - full).abs().max() <= 1e-5


def test_cuda_in_cuda_out_and_memory_budget(model):
    x = torch.randint(0, 256, (540, 960, 3), dtype=torch.uint8, device="cuda")  # 540p -> 4K
    budget = 1 << 30
    e = Engine(model, device="cuda", dtype="fp16", backend="triton", memory_budget=budget)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = e.upscale(x)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert y.is_cuda and y.dtype == torch.uint8 and y.shape == (2160, 3840, 3)
    assert peak <= budget + y.numel(), f"peak {peak / 2**20:.0f} MiB over the budget + the output"
    print(f"540p->4K fp16 tiled: peak {peak / 2**20:.0f} MiB (budget {budget / 2**20:.0f} MiB)")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_cuda_graph_replays_equal_eager_calls(model, lr, backend):
    plain = Engine(model, device="cuda", dtype="fp16", backend=backend)
    graphed = Engine(model, device="cuda", dtype="fp16", backend=backend, cuda_graph=True)
    x = torch.from_numpy(lr).cuda()
    for frame in (x, x.flip(0).contiguous(), x):  # a new input each replay
        a, b = plain.upscale(frame), graphed.upscale(frame)
        assert torch.equal(a, b)
    f = torch.rand(2, 32, 48, 3, device="cuda")
    assert (plain.upscale(f) - graphed.upscale(f)).abs().max() <= 1e-3  # float path, batch 2
    assert len(graphed._graphs) == 2
