"""conv2d_fused (Triton) against conv2d_fused_reference (PyTorch), every epilogue on and off.

On machines without a GPU this runs through the Triton interpreter (conftest sets
TRITON_INTERPRET=1); on a GPU the default cases run compiled there (conftest.TRITON_DEVICE),
and the `cuda` variants run every case in every dtype.
"""

import pytest
import torch

from srgan_fast.reference import conv2d_fused_reference

from ..conftest import TRITON_DEVICE, cuda_cases, diff_msg, gpu_configs

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
    (2, 5, 6, 16, 16, 3, True, False, False, False, True, False),  # uint8 in the kernel prologue (Cin >= 16)
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


def _run_kernel(case, dtype, device, config=None, impl="pointer"):
    n, h, w, cin, cout, k, prelu, skip, shuffle, out_map, u8in, u8out = case
    x, xu, wt, b, a, sk = _make(case, dtype, device)

    def nhwc(t):
        return None if t is None else t.permute(0, 2, 3, 1).contiguous().to(device)

    xin = nhwc(xu) if u8in else nhwc(x).to(dtype)
    y = kern.conv2d_fused(
        xin, kern.pack_weight(wt, dtype, shuffle).to(device), kern.pack_bias(b, shuffle).to(device), k,
        prelu=None if a is None else a.to(device),
        skip=None if sk is None else nhwc(sk).to(dtype),
        shuffle=shuffle, out_map=out_map, out_u8=u8out, config=config, impl=impl,
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


def _check(case, dtype, device, config=None, impl="pointer"):
    got = _run_kernel(case, dtype, device, config, impl)
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


# the TMA main loop: every case (the RGB head and uint8 input take the pointer loop inside the
# same call), and patches smaller than the frame so tiles cross its borders and the zero fill of
# taps outside it is what pads the conv
TMA_TILES = [None, {"TILE_H": 2, "TILE_W": 4}, {"TILE_H": 4, "TILE_W": 2, "BLOCK_N": 16}, {"TILE_H": 1, "TILE_W": 8}]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_fused_tma_fp32(case, monkeypatch):
    calls = []
    launch = kern._launch_tma
    monkeypatch.setattr(kern, "_launch_tma", lambda *a: calls.append(1) or launch(*a))
    _check(case, torch.float32, TRITON_DEVICE, impl="tma")
    assert len(calls) == (case[3] >= 16 and not case[10])  # the TMA loop ran where it can


@pytest.mark.parametrize("tiles", TMA_TILES[1:], ids=["2x4", "4x2_n16", "1x8"])
@pytest.mark.parametrize("case", CASES[:2] + CASES[4:5] + CASES[9:12], ids=IDS[:2] + IDS[4:5] + IDS[9:12])
def test_conv2d_fused_tma_patches(case, tiles):
    _check(case, torch.float32, "cpu", config=tiles, impl="tma")


def test_conv2d_fused_tma_eligibility():
    x = torch.rand(1, 4, 4, 16)
    w = kern.pack_weight(torch.randn(16, 16, 3, 3))
    assert kern.tma_eligible(x, w, 16) is None
    assert "uint8" in kern.tma_eligible(x.to(torch.uint8), w, 16)
    assert "input channels" in kern.tma_eligible(torch.rand(1, 4, 4, 8), kern.pack_weight(torch.randn(16, 8, 3, 3)), 8)
    odd = torch.rand(1, 4, 5, 20)[..., :16]  # 20-channel pixels: 80 B, aligned; a 17-wide one is not
    assert kern.tma_eligible(odd, w, 16) is None
    assert "strides" in kern.tma_eligible(torch.rand(1, 4, 5, 17)[..., :16], w, 16)
    with pytest.raises(ValueError, match="impl"):
        kern.conv2d_fused(x, w, torch.zeros(16), 3, impl="cudnn")
    # a chunk of Cin per step: a power of two >= 16 dividing it, at most 128 bytes
    assert [kern.tma_block_k(c, 2) for c in (16, 48, 64, 72, 256)] == [16, 16, 64, 8, 64]
    assert [kern.tma_block_k(c, 4) for c in (24, 40, 64, 96)] == [8, 8, 32, 32]
    for c, dt in ((40, torch.float32), (24, torch.float32), (72, torch.float16)):  # fall back to the pointer loop
        xc = torch.rand(1, 4, 4, c).to(dt)
        assert "input channels" in kern.tma_eligible(xc, kern.pack_weight(torch.randn(16, c, 3, 3), dt), c)


@pytest.mark.parametrize("cin,dtype", [(40, torch.float32), (48, torch.float16)], ids=["40_fp32_ptr", "48_fp16_tma"])
def test_conv2d_fused_tma_odd_channel_counts(cin, dtype, monkeypatch):
    calls = []
    launch = kern._launch_tma
    monkeypatch.setattr(kern, "_launch_tma", lambda *a: calls.append(1) or launch(*a))
    case = (2, 5, 7, cin, 16, 3, True, True, False, False, False, False)
    _check(case, dtype, TRITON_DEVICE, impl="tma")
    assert len(calls) == (dtype == torch.float16)  # 48 fp16: 16-channel chunks; 40 fp32: 8 < 16, pointer loop


def test_conv2d_fused_tma_config_on_a_pointer_launch_falls_back():
    # the RGB head cannot take TMA: a TMA config given for it runs the pointer loop with its defaults
    _check(CASES[6], torch.float32, TRITON_DEVICE, config={"TILE_H": 2, "TILE_W": 4}, impl="tma")


def test_pack_weight_pads_to_aligned_tiles():
    # the tail (12 outputs) packs to 16 columns (32-byte rows), the RGB head to 8 channels per tap
    wt = torch.randn(12, 64, 5, 5)
    p = kern.pack_weight(wt)
    assert p.shape == (25 * 64, 16)
    assert torch.equal(p[:, 12:], torch.zeros(25 * 64, 4))
    assert torch.equal(p[:, :12], wt.permute(2, 3, 1, 0).reshape(25 * 64, 12))
    h = kern.pack_weight(torch.randn(64, 3, 9, 9))
    assert h.shape == (81 * 8, 64)
    assert torch.equal(h.view(81, 8, 64)[:, 3:], torch.zeros(81, 5, 64))
    assert [kern.padded_cin(c) for c in (1, 3, 8, 9, 15, 16, 40)] == [8, 8, 8, 16, 16, 16, 40]
    assert [kern.padded_cout(c) for c in (3, 12, 16, 48, 64, 200, 256)] == [16, 16, 16, 64, 64, 256, 256]


@pytest.mark.parametrize("case", CASES[:2] + CASES[3:4] + CASES[7:8], ids=IDS[:2] + IDS[3:4] + IDS[7:8])
def test_conv2d_fused_fp16(case):
    _check(case, torch.float16, TRITON_DEVICE)


@pytest.mark.parametrize("case", CASES[:2] + CASES[4:5] + CASES[10:11], ids=IDS[:2] + IDS[4:5] + IDS[10:11])
def test_conv2d_fused_tma_fp16(case):
    _check(case, torch.float16, TRITON_DEVICE, impl="tma")


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
    with pytest.raises(ValueError, match="bias"):  # Cout is the bias's length; 32 does not pack to 16 columns
        kern.conv2d_fused(x, w, torch.zeros(32), 3)
    with pytest.raises(ValueError, match="contiguous"):
        kern.conv2d_fused(x, w.t().contiguous().t(), torch.zeros(16), 3)
    with pytest.raises(ValueError, match="unit channel stride"):
        kern.conv2d_fused(x.permute(0, 3, 1, 2), w, torch.zeros(16), 3)
    with pytest.raises(ValueError, match="float16"):
        kern.conv2d_fused(x.half(), w, torch.zeros(16), 3)
    with pytest.raises(ValueError, match="Cout % 4"):
        kern.conv2d_fused(x, kern.pack_weight(torch.randn(6, 16, 3, 3)), torch.zeros(6), 3, shuffle=True)
    with pytest.raises(ValueError, match="Cout % 4"):
        kern.pack_weight(torch.randn(6, 16, 3, 3), shuffle=True)


@cuda_cases(CASES, IDS)
def test_conv2d_fused_cuda(case, dtype):
    _check(case, dtype, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("rep", range(20))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_conv2d_fused_tma_cuda_repeated(dtype, rep):
    """What the interpreter cannot see: the copy engine's zero fill at the frame's borders and the
    mbarrier pipeline, run 20 times on odd shapes (auto never picks TMA until this passes on a card)."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs sm_90")
    odd = (2, 37, 29, 64, 64, 3, True, True, False, False, False, False)
    for case in (CASES[0], CASES[1], CASES[4], CASES[10], odd):
        _check(case, dtype, "cuda", impl="tma", config=TMA_TILES[rep % len(TMA_TILES)])


@pytest.mark.cuda
@pytest.mark.parametrize("cfg", range(len(kern._GPU_CONFIGS)))
@pytest.mark.parametrize(
    "case", CASES[:2] + CASES[4:6] + CASES[9:10] + GPU_LIKE_CASES[:1], ids=lambda c: f"{c[3]}to{c[4]}k{c[5]}"
)
def test_conv2d_fused_every_autotune_config_cuda(case, cfg):
    """Each config autotuning may pick in production, forced, for parity (fp16; fp32 IEEE)."""
    config = gpu_configs(kern)[cfg]
    config.setdefault("BLOCK_N", 64)
    _check(case, torch.float16, "cuda", config=config)
    _check(case, torch.float32, "cuda", config=config)


# ---------------------------------------------------------------------------- the triton_tma backend


def test_triton_tma_backend_is_a_candidate():
    from srgan_fast.backends import choose_backend, get_backend

    # never "auto" before its card run, where auto could pick it (a CUDA device; nothing launched)
    assert choose_backend("auto", torch.device("cuda")).name == "triton"
    assert get_backend("triton_tma").bench_devices == ("cuda",)  # but the bench times it


def test_whole_network_triton_tma_equals_torch_tiled_and_untiled(monkeypatch):
    import numpy as np

    from srgan_fast.engine import Engine
    from srgan_fast.families.srresnet.arch import Generator

    from ..conftest import randomize_bn

    torch.manual_seed(0)
    tiny = randomize_bn(Generator("tiny_x4"))
    calls = []
    launch = kern._launch_tma
    monkeypatch.setattr(kern, "_launch_tma", lambda *a: calls.append(1) or launch(*a))
    x = np.random.default_rng(0).random((2, 9, 11, 3), dtype=np.float32)
    want = Engine(tiny, backend="torch").upscale(x)
    got = Engine(tiny, backend="triton_tma", device=TRITON_DEVICE).upscale(x)
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
    # every op but the RGB head (8-channel pixels) ran the TMA loop: 2 blocks x 2 + trunk + 2 up + tail
    assert len(calls) == 8
    tiled = Engine(tiny, backend="triton_tma", device=TRITON_DEVICE, tile=7).upscale(x)
    assert np.abs(tiled - got).max() <= 1e-5, np.abs(tiled - got).max()
