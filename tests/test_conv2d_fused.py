"""conv2d_fused (Triton) against conv2d_fused_reference (PyTorch), every epilogue on and off.

On machines without a GPU this runs through the Triton interpreter (conftest sets
TRITON_INTERPRET=1); on a GPU the default cases run compiled there (conftest.TRITON_DEVICE),
and the `cuda` variants run every case in every dtype.
"""

import pytest
import torch

from srgan_fast.reference import conv2d_fused_reference

from .conftest import TRITON_DEVICE, diff_msg

kern = pytest.importorskip("srgan_fast.kernels.conv2d_fused")

# (batch, H, W, Cin, Cout, K, prelu, skip, shuffle, out_map, u8 in, u8 out)
CASES = [
    (1, 7, 13, 16, 16, 3, True, False, False, False, False, False),  # block_conv1
    (3, 5, 6, 16, 16, 3, False, True, False, False, False, False),  # block_conv2 / trunk_end
    (1, 1, 1, 64, 64, 3, True, False, False, False, False, False),  # 1x1 frame, 64 channels
    (1, 7, 9, 16, 64, 3, True, False, True, False, False, False),  # upsample: conv+shuffle+PReLU
    (1, 3, 5, 64, 256, 3, True, False, True, False, False, False),  # upsample at 64->256
    (2, 6, 5, 3, 16, 9, True, False, False, False, True, False),  # head: uint8 in, 9x9
    (1, 5, 7, 3, 64, 9, True, False, False, False, False, False),  # head: float in
    (2, 7, 5, 16, 3, 9, False, False, False, True, False, False),  # tail: map + clamp
    (1, 7, 5, 16, 3, 9, False, False, False, True, False, True),  # tail: uint8 store
    (1, 5, 7, 64, 12, 5, False, False, True, True, False, True),  # sub-pixel tail: shuffle + u8
    (2, 4, 3, 64, 12, 5, False, False, True, True, False, False),  # sub-pixel tail: float out
    (1, 31, 17, 16, 16, 3, False, False, False, False, False, False),  # bias only, odd size
    (1, 4, 4, 16, 16, 1, True, True, False, False, False, False),  # 1x1 kernel, prelu + skip
]
IDS = [
    f"b{c[0]}_{c[1]}x{c[2]}_{c[3]}to{c[4]}_k{c[5]}"
    + "".join(f"_{n}" for n, on in zip(("prelu", "skip", "shuffle", "map", "u8in", "u8out"), c[6:]) if on)
    for c in CASES
]

# tolerance on [0,1]-scale activations; fp16/bf16 also face the flash-attention rule below
ATOL = {torch.float32: 2e-5}


def _make(case, dtype, device, seed=0):
    n, h, w, cin, cout, k, prelu, skip, shuffle, out_map, u8in, u8out = case
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, cin, h, w, generator=g)
    xu = None
    if u8in:
        xu = (x * 255).round().to(torch.uint8)
        x = xu.float() / 255
    wt = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
    b = torch.randn(cout, generator=g) * 0.1
    oc, s = (cout // 4, 2) if shuffle else (cout, 1)
    a = torch.rand(oc, generator=g) * 0.3 if prelu else None
    sk = torch.randn(n, oc, h * s, w * s, generator=g) if skip else None
    return x, xu, wt, b, a, sk


def _run_kernel(case, dtype, device, config=None):
    n, h, w, cin, cout, k, prelu, skip, shuffle, out_map, u8in, u8out = case
    x, xu, wt, b, a, sk = _make(case, dtype, device)

    def nhwc(t):
        return None if t is None else t.permute(0, 2, 3, 1).contiguous().to(device)

    xin = nhwc(xu) if u8in else nhwc(x).to(dtype)
    y = kern.conv2d_fused(
        xin, kern.pack_weight(wt, dtype, shuffle).to(device), kern.pack_bias(b, shuffle).to(device), k,
        prelu=None if a is None else a.to(device),
        skip=None if sk is None else nhwc(sk).to(dtype),
        shuffle=shuffle, out_map=out_map, out_u8=u8out, config=config,
    )  # fmt: skip
    return y.permute(0, 3, 1, 2).cpu()


def _reference(case, dtype=torch.float32, device="cpu"):
    n, h, w, cin, cout, k, prelu, skip, shuffle, out_map, u8in, u8out = case
    x, xu, wt, b, a, sk = _make(case, dtype, device)

    def c(t):
        return None if t is None else t.to(device, dtype)

    bias = b.to(device, dtype)
    slopes = None if a is None else a.to(device, dtype)
    y = conv2d_fused_reference(c(x), c(wt), bias, slopes, c(sk), shuffle, out_map, u8out)
    return y.cpu()


def _check(case, dtype, device, config=None):
    got = _run_kernel(case, dtype, device, config)
    want = _reference(case, torch.float32, "cpu")  # never TF32: cuDNN fp32 convs default to it
    u8out = case[-1]
    if u8out:
        d = (got.int() - want.int()).abs()
        assert got.dtype == torch.uint8
        assert d.max() <= (0 if dtype == torch.float32 else 1), diff_msg(got, want)
        return
    if dtype == torch.float32:
        assert torch.allclose(got.float(), want, atol=ATOL[dtype], rtol=1e-5), diff_msg(got, want)
        return
    # flash-attention's rule: our error vs fp32 at most twice PyTorch's own error in this dtype
    torch_lo = _reference(case, dtype, device).float()
    ours = (got.float() - want).abs().max().item()
    theirs = (torch_lo - want).abs().max().item()
    assert ours <= 2 * theirs + 1e-6, f"ours {ours:.3e} vs PyTorch {dtype} {theirs:.3e}; " + diff_msg(got, want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_fused_fp32(case):
    _check(case, torch.float32, TRITON_DEVICE)


# tiled as on the GPU: several M and N blocks, several K chunks per tap with a partial last
# one, so the masks of those paths are checked on the CPU too (the default interpreter launch
# covers Cout and Cin in one block each)
GPU_LIKE = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}
GPU_LIKE_CASES = [
    (1, 5, 7, 40, 48, 3, True, True, False, False, False, False),  # 3 N blocks, K chunks 16+16+8
    (2, 3, 5, 3, 40, 9, True, False, False, False, True, False),  # FLAT_K head: 243 = 15 x 16 + 3
    (1, 4, 3, 24, 64, 3, True, False, True, False, False, False),  # shuffle: one phase per N block
    (1, 5, 6, 40, 12, 5, False, False, True, True, False, True),  # sub-pixel tail, u8 store
]


@pytest.mark.parametrize("case", GPU_LIKE_CASES, ids=["multi_nk", "flat_k_head", "shuffle_nblocks", "subpixel_u8"])
def test_conv2d_fused_gpu_like_tiling(case):
    _check(case, torch.float32, "cpu", config=GPU_LIKE)


@pytest.mark.parametrize("case", CASES[:2] + CASES[3:4] + CASES[7:8], ids=IDS[:2] + IDS[3:4] + IDS[7:8])
def test_conv2d_fused_fp16(case):
    _check(case, torch.float16, TRITON_DEVICE)


def test_conv2d_fused_strided_views_and_out_buffer():
    # NHWC views with padding in W (non-contiguous rows), written into a given buffer
    dev = TRITON_DEVICE
    padded = torch.rand(1, 6, 10, 16)
    x = padded[:, :, :7]
    wt = torch.randn(16, 16, 3, 3) * 0.1
    b = torch.randn(16) * 0.1
    out = torch.full((1, 6, 7, 16), float("nan"), device=dev)
    xd = padded.to(dev)[:, :, :7]  # the view is taken on the device
    y = kern.conv2d_fused(xd, kern.pack_weight(wt).to(dev), b.to(dev), 3, out=out)
    assert y.data_ptr() == out.data_ptr()
    want = conv2d_fused_reference(x.permute(0, 3, 1, 2), wt, b).permute(0, 2, 3, 1)  # CPU: no TF32
    assert torch.allclose(y.cpu(), want, atol=2e-5), diff_msg(y.cpu(), want)


def test_conv2d_fused_checks_inputs():
    x = torch.rand(1, 4, 4, 16)
    w = kern.pack_weight(torch.randn(16, 16, 3, 3))
    with pytest.raises(ValueError, match="K\\*K\\*Cin"):
        kern.conv2d_fused(x, w, torch.zeros(16), 5)
    with pytest.raises(ValueError, match="bias"):
        kern.conv2d_fused(x, w, torch.zeros(8), 3)
    with pytest.raises(ValueError, match="unit channel stride"):
        kern.conv2d_fused(x.permute(0, 3, 1, 2), w, torch.zeros(16), 3)
    with pytest.raises(ValueError, match="float16"):
        kern.conv2d_fused(x.half(), w, torch.zeros(16), 3)
    with pytest.raises(ValueError, match="Cout % 4"):
        kern.conv2d_fused(x, kern.pack_weight(torch.randn(6, 16, 3, 3)), torch.zeros(6), 3, shuffle=True)
    with pytest.raises(ValueError, match="Cout % 4"):
        kern.pack_weight(torch.randn(6, 16, 3, 3), shuffle=True)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_conv2d_fused_cuda(case, dtype):
    _check(case, dtype, "cuda")


def _gpu_configs():
    return [dict(c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages) for c in kern._GPU_CONFIGS]


@pytest.mark.cuda
@pytest.mark.parametrize("cfg", range(len(kern._GPU_CONFIGS)))
@pytest.mark.parametrize(
    "case", CASES[:2] + CASES[4:6] + CASES[9:10] + GPU_LIKE_CASES[:1], ids=lambda c: f"{c[3]}to{c[4]}k{c[5]}"
)
def test_conv2d_fused_every_autotune_config_cuda(case, cfg):
    """Each config autotuning may pick in production, forced, for parity (fp16; fp32 IEEE)."""
    config = _gpu_configs()[cfg]
    config.setdefault("BLOCK_N", 64)
    _check(case, torch.float16, "cuda", config=config)
    _check(case, torch.float32, "cuda", config=config)
