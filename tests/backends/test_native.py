"""The native backend's CPU kernels (csrc/cpu_conv_impl.h) against the plain PyTorch math.

Per op: `conv2d_fused_native` (Winograd F(4x4) fp32, F(2x2) bf16, and direct) against
`conv2d_fused_reference` in float64 (the scalar reference), over the shapes the four families
use (3x3 64->64 and 64->256 with shuffle, 192->64 with skip, 9x9 3->64, 5x5 256->12 with shuffle,
3->64, 64->3), odd frame sizes and batches; wide-buffer reads and writes at a channel offset.
Every ISA build this CPU can run (avx512, avx2, generic) gives the same numbers, in a child
process each (the choice is made once per process). Whole networks: the family contracts
(tests/families) hold native to the module with their tiny models; here the four families at
their real widths, where Winograd runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from srgan_fast.backends import BackendUnavailable
from srgan_fast.engine import Engine
from srgan_fast.reference import conv2d_fused_reference

native = pytest.importorskip("srgan_fast.backends.native")
try:
    ISA = native.isa()
except BackendUnavailable as e:  # pragma: no cover - a checkout without the extension
    pytest.skip(f"native backend unavailable: {e}", allow_module_level=True)

HAS_BF16 = ISA == "avx512+bf16"


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _case(cin, cout, k, r=1, prelu=True, skip=False, n=1, h=9, w=11, seed=0):
    g = _g(seed)
    x = torch.rand(n, h, w, cin, generator=g)
    wt = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
    b = torch.randn(cout, generator=g) * 0.1
    c = cout // (r * r)
    a = torch.rand(c, generator=g) * 0.3 if prelu else None
    s = torch.randn(n, h * r, w * r, c, generator=g) if skip else None
    return x, wt, b, a, s


def _reference(x, wt, b, a, s, r, dtype=torch.float64):
    nchw = lambda t: t.permute(0, 3, 1, 2).to(dtype)  # noqa: E731
    y = conv2d_fused_reference(
        nchw(x), wt.to(dtype), b.to(dtype), a.to(dtype) if a is not None else None,
        nchw(s) if s is not None else None, shuffle=r > 1, shuffle_factor=max(r, 2),
    )  # fmt: skip
    return y.permute(0, 2, 3, 1)


# (cin, cout, k, r, prelu, skip): the families' convs, smaller frames
OPS = [
    (64, 64, 3, 1, True, False),  # srresnet/msrresnet block conv1, compact body
    (64, 64, 3, 1, False, True),  # block conv2 + skip
    (192, 64, 3, 1, False, True),  # RRDB dense_out + skip
    (96, 32, 3, 1, True, False),  # RRDB dense conv (LeakyReLU as a PReLU)
    (64, 256, 3, 2, True, False),  # upsample conv + shuffle + PReLU
    (3, 64, 9, 1, True, False),  # srresnet head 9x9
    (256, 12, 5, 2, False, False),  # srresnet tail (5x5 at 2x, shuffled to 3 channels)
    (3, 64, 3, 1, True, False),  # compact/RRDB head
    (64, 3, 3, 1, False, True),  # MSRResNet/RRDB tail + skip
    (64, 48, 3, 4, False, True),  # compact tail: 48 -> 3 channels, shuffle 4, + skip
    (16, 16, 1, 1, True, False),  # 1x1
    (32, 40, 3, 1, True, True),  # outputs not in 16s: padding vectors on the AVX2/generic builds
    (32, 24, 3, 1, False, False),
]


@pytest.fixture(params=[6, 4], ids=["F6", "F4"])
def fp32_tile(request, monkeypatch):
    """Both fp32 Winograd tiles at every size: F(6x6) and F(4x4) (SRGAN_FAST_WINOGRAD_M)."""
    monkeypatch.setenv("SRGAN_FAST_WINOGRAD_M", str(request.param))
    assert native.fp32_tile() == request.param
    return request.param


@pytest.mark.parametrize("op", OPS, ids=lambda o: "x".join(map(str, o[:3])) + f"r{o[3]}")
@pytest.mark.parametrize("winograd", [None, False], ids=["auto", "direct"])
def test_conv2d_fused_native_fp32_matches_the_reference(op, winograd, fp32_tile):
    cin, cout, k, r, prelu, skip = op
    if winograd is False and fp32_tile == 4:
        pytest.skip("direct: the tile does not apply")
    x, wt, b, a, s = _case(cin, cout, k, r, prelu, skip, n=2, h=9, w=11)
    want = _reference(x, wt, b, a, s, r)
    got = native.conv2d_fused_native(x, wt, b, a, s, shuffle_factor=r, winograd=winograd)
    assert got.shape == want.shape
    err = (got.double() - want).abs().max().item()
    torch_fp32 = _reference(x, wt, b, a, s, r, torch.float32)  # PyTorch's own fp32 conv
    err_torch = (torch_fp32.double() - want).abs().max().item()
    # measured (9x11 frames): direct equals PyTorch's error; Winograd F(4x4) 2.5-4x it (1.5e-6 to
    # 3.2e-6 of the output's range, where PyTorch's is 0.4e-6 to 1.1e-6); F(6x6) up to 2x F(4x4)'s
    wino = native.pack(wt, b, a, r, winograd=winograd)["wino"]
    assert wino in ((fp32_tile,) if winograd is None and k == 3 and cin % 16 == 0 and cout % 16 == 0 else (0,))
    assert err <= {0: 2.0, 4: 6.0, 6: 12.0}[wino] * err_torch + 1e-7, (err, err_torch, wino)


@pytest.mark.parametrize("hw", [(1, 1), (1, 5), (4, 4), (5, 4), (6, 6), (7, 12), (13, 6), (17, 33)])
def test_winograd_covers_every_border_and_partial_tile(hw, fp32_tile):
    h, w = hw
    x, wt, b, a, s = _case(32, 32, 3, 1, True, True, n=1, h=h, w=w, seed=3)
    want = _reference(x, wt, b, a, s, 1)
    got = native.conv2d_fused_native(x, wt, b, a, s, winograd=True)
    # measured: F(4x4) 0.1-1.5e-6 of the range, F(6x6) 0.1-3.0e-6 (a wrong border would be O(1))
    bound = {4: 2e-6, 6: 5e-6}[fp32_tile]
    assert (got.double() - want).abs().max().item() <= bound * max(want.abs().max().item(), 1.0)


# (cin, cout, k, r, prelu, skip): the few-output convs, vectorised over input channels
FEW_OUT = [
    (64, 3, 3, 1, False, True),
    (64, 3, 9, 1, False, False),
    (256, 12, 5, 2, False, False),
    (32, 6, 3, 1, True, True),
]


@pytest.mark.parametrize("op", FEW_OUT, ids=lambda o: "x".join(map(str, o[:3])))
@pytest.mark.parametrize("hw", [(1, 1), (3, 2), (5, 9), (4, 70), (11, 133)])
def test_few_output_convs_match_the_reference_at_every_edge_and_both_paths_agree(op, hw, monkeypatch):
    """The RGB tails run vectorised over input channels (8 pixels x 3 outputs a step on AVX-512,
    lane sums at the end); the older pixel-vectorised kernel (SRGAN_FAST_DIRECT_PX=1) is the
    check: both within fp32 rounding of the float64 reference, at widths that cut the 8-pixel
    steps and the 64-pixel work items anywhere and frames smaller than the kernel."""
    cin, cout, k, r, prelu, skip = op
    x, wt, b, a, s = _case(cin, cout, k, r, prelu, skip, n=2, h=hw[0], w=hw[1], seed=5)
    assert native.pack(wt, b, a, r)["px"] > 0  # the pixel/channel-vectorised kernel, not direct
    want = _reference(x, wt, b, a, s, r)
    got = native.conv2d_fused_native(x, wt, b, a, s, shuffle_factor=r)
    monkeypatch.setenv("SRGAN_FAST_DIRECT_PX", "1")
    old = native.conv2d_fused_native(x, wt, b, a, s, shuffle_factor=r)
    err_torch = (_reference(x, wt, b, a, s, r, torch.float32).double() - want).abs().max().item()
    for y in (got, old):
        assert (y.double() - want).abs().max().item() <= 2.0 * err_torch + 1e-6
    # the two summation orders differ by rounding only (a wrong lane or edge would be O(0.1))
    assert (got - old).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_a_wide_buffer_is_read_by_prefix_and_written_at_an_offset_leaving_the_rest():
    """RRDB's dense block: a conv reads the first 96 channels of a 192-wide buffer and writes its
    32 at channel 96 of the same buffer; the other channels are untouched."""
    g = _g(5)
    buf = torch.rand(2, 8, 12, 192, generator=g)
    before = buf.clone()
    wt = torch.randn(32, 96, 3, 3, generator=g) * 0.05
    b = torch.randn(32, generator=g) * 0.1
    a = torch.full((32,), 0.2)
    p = native.pack(wt, b, a)
    assert p["wino"] == 6  # Winograd F(6x6) for this fp32 conv
    native.run_conv(p, buf[..., :96], buf, dst_off=96)
    want = _reference(before[..., :96].contiguous(), wt, b, a, None, 1)
    assert (buf[..., 96:128].double() - want).abs().max().item() < 3e-5  # F(6x6) over 96 inputs: 1.6e-5
    assert torch.equal(buf[..., :96], before[..., :96]) and torch.equal(buf[..., 128:], before[..., 128:])


def test_bad_buffers_and_weights_are_refused_with_a_message():
    x, wt, b, a, _ = _case(16, 16, 3)
    p = native.pack(wt, b, a)
    with pytest.raises(ValueError, match="do not fit"):
        native.run_conv(p, x, torch.empty(1, 9, 10, 16))
    with pytest.raises(ValueError, match="not a float32 NHWC"):
        native.run_conv(p, x.permute(0, 2, 1, 3), torch.empty(1, 11, 9, 16))
    with pytest.raises(ValueError, match="Winograd needs a 3x3 conv"):
        native.pack(torch.zeros(16, 3, 3, 3), torch.zeros(16), winograd=True)
    with pytest.raises(ValueError, match="PReLU with 5 slopes"):
        native.pack(wt, b, torch.ones(5))
    from srgan_fast import _C

    with pytest.raises(ValueError, match="null pointer"):
        _C.conv_direct(0, 16, 1, 4, 4, 16, 3, p["w"].data_ptr(), 16, False, p["bias"].data_ptr(), 0, 0, 0,
                       x.data_ptr(), 16, 0, 1, 16, 1)  # fmt: skip
    with pytest.raises(ValueError, match="r must be 1..8"):  # r*r would overflow
        _C.conv_direct(x.data_ptr(), 16, 1, 4, 4, 16, 3, p["w"].data_ptr(), 16, False, p["bias"].data_ptr(), 0, 0, 0,
                       x.data_ptr(), 16, 0, 65536, 16, 1)  # fmt: skip
    with pytest.raises(ValueError, match="pixel stride is over"):
        _C.conv_direct(x.data_ptr(), 10**9, 1, 4, 4, 16, 3, p["w"].data_ptr(), 16, False, p["bias"].data_ptr(), 0, 0,
                       0, x.data_ptr(), 16, 0, 1, 16, 1)  # fmt: skip
    with pytest.raises(ValueError, match="dst overlaps the channels src reads"):
        native.run_conv(p, x, x)
    with pytest.raises(ValueError, match="m must be 2, 4 or 6"):
        _C.conv_winograd(x.data_ptr(), 16, 1, 4, 4, 16, 3, p["w"].data_ptr(), 16, False, p["bias"].data_ptr(), 0, 0,
                         0, x.data_ptr(), 16, 0, 1, 16, 1)  # fmt: skip


def test_one_engine_called_from_two_threads_gives_each_its_own_result():
    """The runner's buffers are per engine: concurrent calls are serialised, never mixed."""
    import threading

    from srgan_fast.compact import random_compact

    torch.manual_seed(0)
    eng = Engine(random_compact("realesr-animevideov3"), device="cpu", backend="native")
    xs = [torch.rand(1, 16, 20, 3, generator=_g(40 + i)) for i in range(2)]
    want = [eng.upscale(x) for x in xs]
    got = [None, None]

    def work(i):
        for _ in range(3):
            got[i] = eng.upscale(xs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all((g - w).abs().max().item() == 0 for g, w in zip(got, want))


@pytest.mark.skipif(not HAS_BF16, reason=f"bf16 kernels need avx512_bf16; this CPU runs {ISA}")
@pytest.mark.parametrize("op", [OPS[0], OPS[2], OPS[4], OPS[5], OPS[6]], ids=lambda o: "x".join(map(str, o[:3])))
def test_bf16_is_as_accurate_as_a_direct_bf16_conv(op):
    """bf16 operands, fp32 accumulation: the error is bf16's rounding of the inputs, about what
    PyTorch's own bf16 conv (operands rounded, fp32 sums) gives -- F(2x2) Winograd does not add to it."""
    cin, cout, k, r, prelu, skip = op
    x, wt, b, a, s = _case(cin, cout, k, r, prelu, skip, n=1, h=12, w=12, seed=7)
    want = _reference(x, wt, b, a, s, r)
    got = native.conv2d_fused_native(x, wt, b, a, s, shuffle_factor=r, dtype=torch.bfloat16)
    rb = lambda t: t.to(torch.bfloat16).float() if t is not None else None  # noqa: E731
    torch_bf16 = _reference(rb(x), rb(wt), b, a, s, r)  # rounded operands, float64 sums
    err = (got.double() - want).abs()
    if native.pack(wt, b, a, r, bf16=True)["px"]:  # few outputs (the RGB tails): fp32 in either dtype
        err_fp32 = (_reference(x, wt, b, a, s, r, torch.float32).double() - want).abs().max().item()
        assert err.max().item() <= 2.0 * err_fp32 + 1e-6, (err.max().item(), err_fp32)
        return
    err_torch = (torch_bf16 - want).abs()
    assert err.max().item() > 1e-6, "bf16 operands should show bf16's rounding: did fp32 run?"
    assert err.max().item() <= 2.5 * err_torch.max().item() + 1e-6, (err.max().item(), err_torch.max().item())
    assert err.mean().item() <= 1.5 * err_torch.mean().item() + 1e-7, (err.mean().item(), err_torch.mean().item())


def test_bf16_is_refused_where_the_cpu_has_no_avx512_bf16():
    code = (
        "import torch\n"
        "from srgan_fast.engine import Engine\n"
        "from srgan_fast.backends import BackendUnavailable\n"
        "try:\n"
        "    Engine('srresnet_x4', device='cpu', backend='native', dtype='bf16')\n"
        "except BackendUnavailable as e:\n"
        "    print('REFUSED', e)\n"
    )
    env = dict(os.environ, SRGAN_FAST_CPU_ISA="avx2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "REFUSED" in out.stdout and "avx512_bf16" in out.stdout, out.stdout
    if HAS_BF16:  # this CPU has it: the message says what narrowed the choice
        assert "SRGAN_FAST_CPU_ISA=avx2" in out.stdout, out.stdout


_ISA_CHILD = r"""
import json, sys, torch
from srgan_fast.backends import native
from tests.backends.test_native import OPS, _case
out = {"isa": native.isa(), "y": []}
for i, (cin, cout, k, r, prelu, skip) in enumerate(OPS):
    x, wt, b, a, s = _case(cin, cout, k, r, prelu, skip, n=1, h=7, w=10, seed=20 + i)
    out["y"].append(native.conv2d_fused_native(x, wt, b, a, s, shuffle_factor=r).flatten().tolist())
json.dump(out, sys.stdout)
"""


def _isa_run(isa):
    env = dict(os.environ, SRGAN_FAST_CPU_ISA=isa)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _ISA_CHILD], env=env, capture_output=True, text=True, timeout=300,
                         cwd=root)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_isa_build_this_cpu_runs_gives_the_same_numbers():
    """The AVX-512, AVX2 and 128-bit generic builds (chosen by SRGAN_FAST_CPU_ISA, never above what
    the CPU has) agree to fp32 summation-order noise; on a CPU without AVX-512 the request falls back."""
    runs = {isa: _isa_run(isa) for isa in ("avx512", "avx2", "generic")}
    got = {isa: r["isa"] for isa, r in runs.items()}
    assert got["generic"] == "generic"
    assert got["avx2"] in ("avx2", "generic")
    assert got["avx512"] == ISA
    base = runs["generic"]["y"]
    for isa, r in runs.items():
        for i, (y, y0) in enumerate(zip(r["y"], base)):
            d = (torch.tensor(y) - torch.tensor(y0)).abs().max().item()
            assert d <= 1e-5 * max(1.0, torch.tensor(y0).abs().max().item()), (isa, OPS[i], d)


FAMILIES = {
    "srresnet_x4": lambda: "srresnet_x4",
    "compact": lambda: __import__("srgan_fast.compact", fromlist=["x"]).random_compact("realesr-animevideov3"),
    "msrresnet": lambda: __import__("srgan_fast.msrresnet", fromlist=["x"]).random_msrresnet(),
    "rrdbnet": lambda: __import__("srgan_fast.rrdbnet", fromlist=["x"]).random_rrdbnet(),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_real_width_networks_match_the_module_in_fp32_and_tiled_equals_untiled(family, fp32_tile):
    """At the families' real widths (64 features, 32 growth), where the body convs run by Winograd:
    the whole network within 1e-4 of the plain module (reference backend), and tiled == untiled."""
    torch.manual_seed(0)
    m = FAMILIES[family]()
    x = torch.rand(1, 12, 14, 3, generator=_g(11))
    ref = Engine(m, device="cpu", backend="reference").upscale(x)
    eng = Engine(m, device="cpu", backend="native")
    got = eng.upscale(x)
    assert any(p["wino"] for p in eng._runner._prepared.values() if isinstance(p, dict)), "no conv ran Winograd"
    err = (got - ref).abs().max().item()
    assert err <= 1e-4, err
    tiled = Engine(m, device="cpu", backend="native", tile=8).upscale(x)
    assert (tiled - got).abs().max().item() <= 1e-5


@pytest.mark.skipif(not HAS_BF16, reason=f"bf16 kernels need avx512_bf16; this CPU runs {ISA}")
def test_bf16_network_error_is_no_larger_than_torch_bf16s():
    """srresnet_x4 in bf16 on a photo crop: within PyTorch's own bf16 error (bf16 module, the
    same frame) against the fp32 module, max and mean."""
    from tests.conftest import data_root

    root = data_root()
    if root is None:
        pytest.skip("datasets absent (SRGAN_FAST_DATA)")
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(root / "Set5" / "LR_x4" / "baby.png").convert("RGB"))[:32, :32]
    x = torch.from_numpy(img.copy()).float()[None] / 255
    ref = Engine("srresnet_x4", device="cpu", backend="reference").upscale(x)
    ours = Engine("srresnet_x4", device="cpu", backend="native", dtype="bf16").upscale(x)
    theirs = Engine("srresnet_x4", device="cpu", backend="torch", dtype="bf16").upscale(x)
    e_ours, e_theirs = (ours - ref).abs(), (theirs - ref).abs()
    assert e_ours.max().item() > 1e-5  # bf16 ran
    assert e_ours.max().item() <= 2 * e_theirs.max().item(), (e_ours.max().item(), e_theirs.max().item())
    assert e_ours.mean().item() <= 1.5 * e_theirs.mean().item(), (e_ours.mean().item(), e_theirs.mean().item())


def test_plans_run_f6_and_deep_plans_f4(monkeypatch):
    """By default fp32 convs run F(6x6); RRDBNet (350 3x3 convs, over DEEP_PLAN) keeps F(4x4):
    its rounding error is half F(6x6)'s (measured at 64x64: 4.7e-5 against 8.2e-5 of the module's
    output, the bound being 1e-4)."""
    monkeypatch.delenv("SRGAN_FAST_WINOGRAD_M", raising=False)
    torch.manual_seed(0)
    for family, tile in (("srresnet_x4", 6), ("compact", 6), ("msrresnet", 6), ("rrdbnet", 4)):
        eng = Engine(FAMILIES[family](), device="cpu", backend="native")
        packs = [p for p in eng._runner._prepared.values() if isinstance(p, dict)]
        packs += [q for p in eng._runner._prepared.values() if isinstance(p, tuple) for q in p]
        assert eng._runner.tile == tile and {p["wino"] for p in packs} - {0} == {tile}, family
