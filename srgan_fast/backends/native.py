"""Backend "native": the plan on this project's own CPU kernels (csrc/cpu_conv_impl.h via srgan_fast._C).

Every convolution is one call into C++ with its epilogue fused (bias, pixel shuffle, PReLU,
the skip add, the write at a channel offset of a wide buffer):
  * 3x3 convolutions whose channels are multiples of 16 (every body conv of the four families)
    run by Winograd F(6x6, 3x3): 64 multiplies per 6x6 outputs and input channel where direct
    convolution takes 324, so 5.1x fewer in the GEMMs, for the cost of the transforms; plans
    deeper than DEEP_PLAN 3x3 convs (RRDBNet) run F(4x4, 3x3) (4x fewer), whose rounding error is
    half F(6x6)'s (F(2x2, 3x3) in bf16: 2.25x fewer; see below);
  * the others (9x9/5x5 heads and tails, 3-channel inputs, 48-channel outputs) run direct, as an
    implicit GEMM over (tap, input channel), vectorised over output channels;
  * convs with at most 12 outputs (the RGB tails: 3, or 12 before a shuffle) run direct
    vectorised over input channels instead (a 16-output-channel vector would be 25-80% padding):
    8 pixels x 3 outputs of accumulators a step, summed across lanes at the end; in fp32 in
    either dtype. SRGAN_FAST_DIRECT_PX=1 runs the older pixel-vectorised kernel (2.1-2.5x slower:
    it transposed its input patch with scalar stores), which also takes inputs not in whole vectors.
Activations are NHWC float32 in buffers allocated once per frame shape (the plan's buffer
assignment; wide buffers are written in place). Weights are transformed and packed once, here,
in float64 for the Winograd transform.

dtype="bf16" (CPUs with avx512_bf16): the GEMM operands are rounded to bf16 (the weights once,
the transformed tiles per call) and accumulated in fp32 by vdpbf16ps; transforms, epilogues and
activations stay fp32. Winograd runs F(2x2, 3x3) there: F(4x4)'s transforms (coefficients up to
8) amplify bf16's rounding, 5-8x the error of a direct bf16 convolution end to end, where F(2x2)'s
(only additions) leave it as direct's. fp16 is not offered (no CPU here multiplies it faster than fp32).

The kernels are compiled per ISA (AVX-512, AVX2+FMA, a 128-bit generic path for older x86 and
ARM) and chosen at run time (`isa()`); SRGAN_FAST_CPU_ISA=avx2|generic narrows that choice.
SRGAN_FAST_WINOGRAD=0 runs every conv direct (to measure what Winograd buys and costs);
SRGAN_FAST_WINOGRAD_M=4|6 fixes the fp32 tile.
"""

from __future__ import annotations

import os
import threading

import torch
import torch.nn.functional as F

from ..plan import INPUT, OUT_MAP_CLAMP, OUTPUT, FusedOp, Plan
from ..reference import to_uint8
from .base import BackendUnavailable, PlanRunner
from .registry import Backend

NPAD = 16  # output channels of packed weights are padded to a multiple of this (the widest vector)

# Winograd F(m x m, 3x3) (Lavin & Gray 2016): G of the weight transform G g G^T, in float64
_G = {
    4: torch.tensor(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        dtype=torch.float64,
    ),
    2: torch.tensor([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]], dtype=torch.float64),
    # points 0, +-1, +-2, +-1/2, inf (with csrc's bt8/at8)
    6: torch.tensor(
        [
            [1, 0, 0],
            [-2 / 9, -2 / 9, -2 / 9],
            [-2 / 9, 2 / 9, -2 / 9],
            [1 / 90, 1 / 45, 2 / 45],
            [1 / 90, -1 / 45, 2 / 45],
            [32 / 45, 16 / 45, 8 / 45],
            [32 / 45, -16 / 45, 8 / 45],
            [0, 0, 1],
        ],
        dtype=torch.float64,
    ),
}
# fp32 Winograd tile: F(6x6, 3x3), measured against F(4x4) on this CPU (quiet, interleaved):
# srresnet_x4 1.03x at 128x128 and 1.06x at 960x540, compact 1.06x / 1.11x, MSRResNet 1.05x at
# 128x128. bf16 stays F(2x2).
# Plans with more 3x3 convs than this (RRDBNet: 350) keep F(4x4): F(6x6)'s rounding error, about
# twice F(4x4)'s per conv, adds up over the depth (tests/backends/test_native.py)
DEEP_PLAN = 64


def fp32_tile(n_convs: int = 0) -> int:
    """The fp32 Winograd tile of the convs of a plan with `n_convs` 3x3 convs:
    SRGAN_FAST_WINOGRAD_M (4 or 6) where set; else 4 for a plan deeper than DEEP_PLAN, 6 below."""
    v = os.environ.get("SRGAN_FAST_WINOGRAD_M", "").strip()
    if v in ("4", "6"):
        return int(v)
    if v:
        raise ValueError(f"SRGAN_FAST_WINOGRAD_M must be 4 or 6, got {v!r}")
    return 4 if n_convs > DEEP_PLAN else 6


def _ext():
    try:
        from .. import _C
    except ImportError as e:
        raise BackendUnavailable(
            "backend 'native' needs srgan_fast._C (csrc/), which is not built: reinstall from a checkout "
            f"with a C++ compiler (pip install -e .) ({e})"
        ) from None
    if not hasattr(_C, "conv_winograd"):
        raise BackendUnavailable("srgan_fast._C predates the CPU kernels: rebuild it (pip install -e .)")
    return _C


def _requires(device: torch.device) -> str | None:
    try:
        _ext()
    except BackendUnavailable as e:
        return str(e)
    return None


def isa() -> str:
    """The ISA the CPU kernels run with on this machine ('avx512+bf16', 'avx512', 'avx2', 'generic')."""
    return _ext().cpu_isa()


def _winograd_enabled() -> bool:
    return os.environ.get("SRGAN_FAST_WINOGRAD", "1").strip().lower() not in ("0", "off", "no", "false")


def uses_winograd(op: FusedOp) -> bool:
    """Whether the native backend runs this conv by Winograd (F(6x6) or F(4x4) in fp32, F(2x2) in bf16)."""
    return op.k == 3 and op.cin % 16 == 0 and op.cout % 16 == 0 and _winograd_enabled()


def shuffle_order(cout: int, r: int) -> torch.Tensor:
    """The permutation that puts conv output channel c*r*r + sub (PixelShuffle's order) at
    sub*C + c, so that consecutive channels of the kernel's vectors land on one output pixel."""
    if r == 1:
        return torch.arange(cout)
    c = cout // (r * r)
    return torch.arange(cout).view(c, r * r).t().reshape(-1)


def _pad_cols(w: torch.Tensor, npad: int) -> torch.Tensor:
    return F.pad(w, (0, npad - w.shape[-1]))


def pack_winograd(weight: torch.Tensor, npad: int, m: int = 4) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> U = G g G^T as ((m+2)^2, Cin, npad) float32 (computed in float64)."""
    g = _G[m]
    u = torch.einsum("ak,oikl,bl->abio", g, weight.double(), g)  # (m+2, m+2, Cin, Cout)
    return _pad_cols(u.reshape((m + 2) ** 2, weight.shape[1], weight.shape[0]), npad).float().contiguous()


def pack_direct(weight: torch.Tensor, npad: int) -> torch.Tensor:
    """(Cout, Cin, K, K) -> (K*K, Cin, npad) float32: tap-major, then input channel."""
    co, ci, k, _ = weight.shape
    w = weight.float().permute(2, 3, 1, 0).reshape(k * k, ci, co)
    return _pad_cols(w, npad).contiguous()


BF16_MIN_CIN = 16  # bf16 runs convs with at least this many inputs (not the heads)
PX_WIDTHS = (3, 6, 12)  # output channels of the pixel-vectorised direct conv (its instantiations)


def pack_direct_px(weight: torch.Tensor, nc: int) -> torch.Tensor:
    """(Cout, Cin, K, K) -> (K, Cin, K, nc) float32, Cout zero-padded to nc: the layout of the
    direct conv vectorised over pixels (few output channels: the RGB tails)."""
    co = weight.shape[0]
    w = weight.float().permute(2, 1, 3, 0)  # (ky, cin, kx, cout)
    return F.pad(w, (0, nc - co)).contiguous()


def to_bf16_pairs(packed: torch.Tensor) -> torch.Tensor:
    """(T, Cin, npad) float32 -> (T, ceil(Cin/2), npad, 2) bfloat16: input channels in pairs, the
    layout of vdpbf16ps' B operand (an odd Cin gets a zero channel)."""
    t, ci, n = packed.shape
    if ci % 2:
        packed = F.pad(packed, (0, 0, 0, 1))
    return packed.view(t, -1, 2, n).transpose(2, 3).contiguous().to(torch.bfloat16)


def pack(
    weight, bias, prelu=None, r: int = 1, bf16: bool = False, winograd: bool | None = None, tile: int | None = None
) -> dict:
    """One conv's weights as the kernels read them, once: output channels reordered for the
    shuffle (`shuffle_order`), Winograd-transformed (fp32: `fp32_tile`; F(2x2) bf16) or packed for the
    direct conv, padded to NPAD, bf16 pairs when `bf16`. `winograd` None: where it applies
    (`uses_winograd`); False: direct. `tile`: the fp32 Winograd tile, 4 or 6 (None: `fp32_tile()`)."""
    cout, cin, k = int(weight.shape[0]), int(weight.shape[1]), int(weight.shape[-1])
    order = shuffle_order(cout, r)
    weight, bias = weight.float()[order], bias.float()[order]
    npad = -(-cout // NPAD) * NPAD
    can = k == 3 and cin % 16 == 0 and cout % 16 == 0
    if winograd and not can:
        raise ValueError(f"Winograd needs a 3x3 conv with channels in multiples of 16, got {cout}x{cin}x{k}x{k}")
    wino = can and _winograd_enabled() if winograd is None else bool(winograd)
    m = 2 if bf16 else (tile or fp32_tile())  # bf16: F(2x2), whose transforms do not amplify bf16's rounding
    px = 0 if wino else next((nc for nc in PX_WIDTHS if cout <= nc), 0)
    if px:  # few outputs: vectorised over pixels, fp32 in either dtype
        packed = pack_direct_px(weight, px)
    else:
        packed = pack_winograd(weight, npad, m) if wino else pack_direct(weight, npad)
        if bf16:
            packed = to_bf16_pairs(packed)
    c = cout // (r * r)
    if prelu is not None:
        prelu = prelu.float().reshape(-1)
        prelu = (prelu.expand(c) if prelu.numel() == 1 else prelu).contiguous()
        if prelu.numel() != c:
            raise ValueError(f"PReLU with {prelu.numel()} slopes for {c} channels")
    return {
        "w": packed,
        "bias": _pad_cols(bias, npad).contiguous(),
        "prelu": prelu,
        "npad": npad,
        "wino": m if wino else 0,
        "px": px,
        "k": k,
        "cin": cin,
        "cout": cout,
        "r": r,
        "bf16": bf16,
    }


def _nhwc_prefix(t: torch.Tensor) -> bool:
    """A channel prefix or slice of a dense NHWC float32 CPU buffer (what the kernels can read)."""
    return (
        t.dtype == torch.float32
        and t.device.type == "cpu"
        and t.stride(3) == 1
        and t.stride(1) == t.stride(2) * t.shape[2]
        and t.stride(0) == t.stride(1) * t.shape[1]
    )


def run_conv(p: dict, src: torch.Tensor, dst: torch.Tensor, dst_off: int = 0, skip: torch.Tensor | None = None):
    """One packed conv (`pack`): src (N, H, W, >= cin) into channels dst_off.. of dst
    (N, H*r, W*r, >= dst_off + C), + skip (N, H*r, W*r, >= C) when given; NHWC float32 buffers or
    channel prefixes of them."""
    C = _ext()
    n, h, w, _ = src.shape
    c = p["cout"] // (p["r"] ** 2)
    want = (n, h * p["r"], w * p["r"])
    if src.shape[3] < p["cin"] or tuple(dst.shape[:3]) != want or dst.shape[3] < dst_off + c:
        raise ValueError(f"native conv: src {tuple(src.shape)} / dst {tuple(dst.shape)} do not fit {p['cin']} -> {c}")
    if skip is not None and (tuple(skip.shape[:3]) != want or skip.shape[3] < c):
        raise ValueError(f"native conv: skip {tuple(skip.shape)} does not fit the output {want + (c,)}")
    for t, what in ((src, "src"), (dst, "dst"), (skip, "skip")):
        if t is not None and not _nhwc_prefix(t):
            raise ValueError(f"native conv: {what} is not a float32 NHWC buffer or a channel slice of one")
    if src.untyped_storage().data_ptr() == dst.untyped_storage().data_ptr():
        # one buffer (a dense block): the conv reads its first cin channels and must write past them
        same = src.data_ptr() == dst.data_ptr() and src.stride() == dst.stride()
        if not same or dst_off < p["cin"]:
            raise ValueError("native conv: dst overlaps the channels src reads (a conv reads its input's neighbours)")
    args = dict(
        x=src.data_ptr(),
        x_cs=src.stride(2),
        n=n,
        h=h,
        w=w,
        cin=p["cin"],
        npad=p["npad"],
        bf16=p["bf16"],
        bias=p["bias"].data_ptr(),
        prelu=p["prelu"].data_ptr() if p["prelu"] is not None else 0,
        skip=skip.data_ptr() if skip is not None else 0,
        skip_cs=skip.stride(2) if skip is not None else 0,
        y=dst.data_ptr(),
        y_cs=dst.stride(2),
        y_off=dst_off,
        r=p["r"],
        cout=p["cout"],
        threads=torch.get_num_threads(),
    )
    if p["wino"]:
        C.conv_winograd(m=p["wino"], u=p["w"].data_ptr(), **args)
    elif p["px"]:
        del args["npad"], args["bf16"]
        C.conv_direct_px(k=p["k"], wt=p["w"].data_ptr(), nc=p["px"], **args)
    else:
        C.conv_direct(k=p["k"], wt=p["w"].data_ptr(), **args)
    return dst


def conv2d_fused_native(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    prelu: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
    shuffle_factor: int = 1,
    dtype: torch.dtype = torch.float32,
    winograd: bool | None = None,
) -> torch.Tensor:
    """The fused op `conv2d_fused` on the native kernels, NHWC float32 in and out (x: N,H,W,Cin;
    skip at the output's size): conv + bias -> PixelShuffle(shuffle_factor) -> PReLU -> + skip,
    as `srgan_fast.reference.conv2d_fused_reference` computes it in NCHW. For tests and the
    per-op benchmark; the runner packs once and calls `run_conv`."""
    p = pack(weight, bias, prelu, shuffle_factor, dtype == torch.bfloat16, winograd)
    n, h, w, _ = x.shape
    r = shuffle_factor
    y = torch.empty(n, h * r, w * r, p["cout"] // (r * r))
    return run_conv(p, x.float().contiguous(), y, 0, skip.float().contiguous() if skip is not None else None)


class NativeRunner(PlanRunner):
    """The plan on the project's own CPU kernels (see the module docstring)."""

    name = "native"
    channel_dim = 3
    slack = 1.25

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        self._C = _ext()
        device = torch.device(device)
        if device.type != "cpu":
            raise BackendUnavailable(f"backend 'native' runs on the CPU, not {device}")
        if dtype not in (torch.float32, torch.bfloat16):
            raise BackendUnavailable(f"backend 'native' runs fp32 and bf16, not {dtype}")
        if dtype == torch.bfloat16 and not self._C.cpu_has_bf16():
            narrowed = os.environ.get("SRGAN_FAST_CPU_ISA")
            raise BackendUnavailable(
                f"backend 'native' runs bf16 only on CPUs with avx512_bf16 (kernels here: {self._C.cpu_isa()}"
                + (f", narrowed by SRGAN_FAST_CPU_ISA={narrowed}" if narrowed else "")
                + ")"
            )
        self.bf16 = dtype == torch.bfloat16
        n3 = sum(1 + (op.weight2 is not None) for op in plan.ops if op.weight is not None and op.k == 3)
        self.tile = fp32_tile(n3)  # F(6x6), or F(4x4) for a deep plan
        self._shapes: dict[tuple, dict] = {}
        self._held: dict = {}  # the current frame shape's buffers (of _shapes)
        self._lock = threading.Lock()  # one call at a time: the buffers are the runner's
        super().__init__(plan.to(device=device, dtype=torch.float32), device, dtype)

    def bytes_per_lr_pixel(self) -> int:
        return int(self.plan.bytes_per_lr_pixel(4) * self.slack)  # activations are fp32 in either dtype

    def _pack(self, weight, bias, prelu, r):
        # bf16: every conv but those reading the image itself (the heads: 3 input channels, 1-2%
        # of the time), which stay fp32: the image's values rounded to bf16 (8 bits) would be
        # error added before the first layer
        bf16 = self.bf16 and weight.shape[1] >= BF16_MIN_CIN
        try:
            return pack(weight, bias, prelu, r, bf16, tile=self.tile)
        except ValueError as e:
            raise BackendUnavailable(f"backend 'native': {e}") from None

    def prepare_conv2d_fused(self, op: FusedOp):
        return self._pack(op.weight, op.bias, op.prelu, op.shuffle_r if op.shuffle else 1)

    def prepare_resblock_fused(self, op: FusedOp):
        return (self._pack(op.weight, op.bias, op.prelu, 1), self._pack(op.weight2, op.bias2, None, 1))

    # ---- the plan
    def _buffers(self, n: int, h: int, w: int) -> dict[str, torch.Tensor]:
        key = (n, h, w)
        bufs = self._shapes.get(key)
        if bufs is None:
            if len(self._shapes) >= 2:  # tiles come in a few sizes; keep the latest two
                self._shapes.pop(next(iter(self._shapes)))
            bufs = {
                name: torch.empty(n, h * s, w * s, c)
                for name, (c, s) in self.plan.buffers.items()
                if name not in (INPUT, OUTPUT)
            }
            self._shapes[key] = bufs
        return bufs

    def enter(self, x):
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        return x.contiguous()

    def __call__(self, x, out_u8):
        with self._lock, torch.inference_mode():
            x = self.enter(x)
            n, h, w, _ = x.shape
            self._held = self._buffers(n, h, w)  # (resblock_fused keeps its middle buffer here too)
            bufs = dict(self._held)
            bufs[INPUT] = x
            out = None
            for op in self.plan.ops:
                c, s = self.plan.buffers[op.dst]
                if op.dst == OUTPUT:
                    bufs[OUTPUT] = torch.empty(n, h * s, w * s, c)
                src = bufs[op.src][..., : op.cin]
                if op.out_map:
                    self.finite.update(src)
                skip = bufs[op.skip][..., : op.out_channels] if op.skip is not None else None
                out = getattr(self, op.fn)(op, self._prepared[id(op)], src, skip, bufs[op.dst])
            return self._finish(self.plan.ops[-1], out, out_u8)

    def conv2d_fused(self, op, p, src, skip, dst):
        if skip is not None and op.skip_up != 1:  # the network input, upsampled (compact, MSRResNet)
            nchw = skip.permute(0, 3, 1, 2)
            if op.skip_mode == "bilinear":
                up = F.interpolate(nchw, scale_factor=op.skip_up, mode="bilinear", align_corners=False)
            else:
                up = F.interpolate(nchw, scale_factor=op.skip_up, mode="nearest")
            skip = up.permute(0, 2, 3, 1).contiguous()
        run_conv(p, src, dst, op.dst_off, skip)
        return dst

    def resblock_fused(self, op, p, src, skip, dst):
        p1, p2 = p
        # the middle activation, one buffer per frame shape: a fresh one per block cost a page
        # fault per 4 KiB of it (133 MB a block at 960x540)
        key = ("mid", *src.shape[:3], p1["cout"])
        mid = self._held.get(key)
        if mid is None:
            mid = self._held[key] = torch.empty(*src.shape[:3], p1["cout"])
        run_conv(p1, src, mid, 0, None)
        run_conv(p2, mid, dst, op.dst_off, src)
        return dst

    def _finish(self, op: FusedOp, y: torch.Tensor, out_u8: bool) -> torch.Tensor:
        if op.out_map == OUT_MAP_CLAMP:
            y = y.clamp_(0.0, 1.0)
        elif op.out_map:
            y = y.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
        if op.out_map and out_u8:
            y = to_uint8(y)
        return y


BACKENDS = (
    Backend(
        "native",
        NativeRunner,
        "the project's own CPU kernels (csrc/): Winograd F(4x4,3x3)/F(6x6,3x3) and direct convs with fused "
        "epilogues, AVX-512/AVX2/generic chosen at run time; fp32, bf16 on avx512_bf16 CPUs",
        devices=("cpu",),
        auto_devices=("cpu",),
        priority=2,  # the static rule on a CPU (SRGAN_FAST_CALIBRATE=0): 1.7-2.4x the torch backend here
        bench_devices=("cpu",),
        requires=_requires,
    ),
)
