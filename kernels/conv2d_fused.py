"""conv2d_fused: one Triton kernel for every op of the SRGAN generator.

What is fused (each piece chosen by a constexpr flag, applied while the accumulator is fp32):
  prologue   uint8 input -> x / 255 (IN_U8), or float input as stored
  main loop  implicit-GEMM KxK convolution, stride 1, zero padding K//2 (masked loads)
  epilogue   + bias -> [PixelShuffle(R) by the store's index map, R = 2 or 4] -> [PReLU, per
             (shuffled) channel] -> [+ skip, or + the skip read at (y // S, x // S): a nearest
             upsample by S (SKIP_UP), uint8 skips divided by 255] -> [(y + 1) / 2 (OUT_MAP 1)
             or y as is (OUT_MAP 2), clamp to [0, 1]] -> [round to uint8]

Layout: activations NHWC with unit channel stride (any N/H/W strides); weights packed by
`pack_weight` as (K*K*Cin, Cout) row-major, so a BLOCK_K x BLOCK_N weight tile is one 2-D
load. GEMM view: M = N*H*W output pixels, N = Cout, K = K*K*Cin, looped as K*K taps x Cin
chunks in one flat loop (so the compiler can pipeline it); when Cin is small (the RGB head)
the K axis is walked flat over (tap, channel) pairs instead (FLAT_K), so 9x9x3 = 243 is 4
chunks of 64 rather than 81 chunks of 16 holding 3 real channels.
Pixel shuffle: `pack_weight(..., shuffle=True, factor=R)` / `pack_bias` order the conv's output
channels phase-major (n = (R i + j) * Cout/R^2 + c, where PyTorch has c * R^2 + R i + j), so a
tile stores runs of contiguous channels of one output pixel instead of a stride-R^2 scatter.

Limits: odd K; stride 1; Cout % R^2 == 0 when SHUFFLE; fp32 (IEEE dot, parity mode), fp16
and bf16 storage with fp32 accumulation. Pixel offsets are int64 (frames beyond 2**31
elements are fine).

Same math, in plain PyTorch: srgan_fast.reference.conv2d_fused_reference.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# SRGAN_FAST_AUTOTUNE=0: one fixed GPU config (tests: each autotuned variant costs compiles)
AUTOTUNE = os.environ.get("SRGAN_FAST_AUTOTUNE", "1") != "0"

# GPU configs (BLOCK_M pixels x BLOCK_N output channels x BLOCK_K input channels per step).
# The interpreter runs one program at a time in numpy: fewer, larger programs are faster.
_GPU_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bm, bk, w, s in [
        (128, 64, 4, 3),
        (128, 32, 4, 4),
        (64, 64, 4, 3),
        (256, 64, 8, 3),
        (128, 64, 8, 3),
        (64, 64, 4, 4),
    ]
]


@triton.jit
def _conv2d_fused_kernel(
    x_ptr,  # input activations, NHWC (N, H, W, CIN); float, or uint8 when IN_U8
    w_ptr,  # packed weights (K*K*CIN, COUT), row-major, storage dtype
    b_ptr,  # bias (COUT,), fp32
    a_ptr,  # PReLU slopes, fp32: (COUT,) or (COUT // R^2,) when SHUFFLE; unused without HAS_PRELU
    r_ptr,  # skip input, NHWC with the output's shape (/ SKIP_UP); unused without HAS_SKIP
    y_ptr,  # output NHWC: (N, H, W, COUT), or (N, R H, R W, COUT // R^2) when SHUFFLE
    M,  # N * H * W output pixels (of the conv, before shuffling)
    H,
    W,
    CIN,
    COUT,
    M_BUCKET,  # next power of two of M: only an autotune key (batch 1 and batch 8 tune apart)
    stride_xn,
    stride_xh,
    stride_xw,
    stride_rn,
    stride_rh,
    stride_rw,
    stride_yn,
    stride_yh,
    stride_yw,
    K: tl.constexpr,  # kernel size (odd)
    IN_U8: tl.constexpr,
    FLAT_K: tl.constexpr,  # walk K over (tap, channel) pairs: for small CIN (the RGB head)
    HAS_PRELU: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    SHUFFLE: tl.constexpr,
    OUT_MAP: tl.constexpr,  # 0: none, 1: (y + 1) / 2 then clamp to [0, 1], 2: clamp to [0, 1]
    OUT_U8: tl.constexpr,
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 parity; ignored for fp16/bf16 operands
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SHUFFLE_R: tl.constexpr = 2,  # the pixel-shuffle factor R when SHUFFLE
    SKIP_UP: tl.constexpr = 1,  # the skip is at output resolution / SKIP_UP (nearest upsample)
    SKIP_U8: tl.constexpr = False,  # the skip is uint8 (the network's input): divide by 255
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < COUT
    ow = offs_m % W
    t = offs_m // W
    oh = t % H
    on = t // H

    PAD: tl.constexpr = K // 2
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if FLAT_K:
        for k0 in range(0, K * K * CIN, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)  # packed weight row = tap * CIN + c
            mask_k = offs_k < K * K * CIN
            tap = offs_k // CIN
            c = offs_k % CIN
            ih = oh[:, None] + (tap // K - PAD)[None, :]
            iw = ow[:, None] + (tap % K - PAD)[None, :]
            valid = mask_m[:, None] & mask_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            x_off = on[:, None] * stride_xn + ih * stride_xh + iw * stride_xw + c[None, :]
            xt = tl.load(x_ptr + x_off, mask=valid, other=0)
            w_off = offs_k.to(tl.int64) * COUT
            wt = tl.load(w_ptr + w_off[:, None] + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            if IN_U8:
                xt = (xt.to(tl.float32) * (1.0 / 255.0)).to(wt.dtype)
            acc = tl.dot(xt, wt, acc, input_precision=DOT_PRECISION)
    else:
        num_kc = tl.cdiv(CIN, BLOCK_K)
        for it in range(0, K * K * num_kc):
            tap = it // num_kc
            c0 = (it % num_kc) * BLOCK_K
            ih = oh + (tap // K - PAD)
            iw = ow + (tap % K - PAD)
            valid = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            offs_k = c0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < CIN
            x_off = on * stride_xn + ih * stride_xh + iw * stride_xw
            xt = tl.load(x_ptr + x_off[:, None] + offs_k[None, :], mask=valid[:, None] & mask_k[None, :], other=0)
            w_off = (tap * CIN + offs_k).to(tl.int64) * COUT
            wt = tl.load(w_ptr + w_off[:, None] + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            if IN_U8:
                xt = (xt.to(tl.float32) * (1.0 / 255.0)).to(wt.dtype)
            acc = tl.dot(xt, wt, acc, input_precision=DOT_PRECISION)

    acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    if SHUFFLE:
        # packed channel n = (R i + j) * (COUT // R^2) + c lands at output (R oh + i, R ow + j, c)
        OC = COUT // (SHUFFLE_R * SHUFFLE_R)
        phase = offs_n // OC
        ch = offs_n % OC
        di = phase // SHUFFLE_R
        dj = phase % SHUFFLE_R
        row = SHUFFLE_R * oh[:, None] + di[None, :]
        col = SHUFFLE_R * ow[:, None] + dj[None, :]
    else:
        ch = offs_n
        row = oh[:, None] + 0 * offs_n[None, :]
        col = ow[:, None] + 0 * offs_n[None, :]
    if HAS_PRELU:
        slope = tl.load(a_ptr + ch, mask=mask_n, other=0.0)
        acc = tl.where(acc >= 0, acc, acc * slope[None, :])
    mask = mask_m[:, None] & mask_n[None, :]
    if HAS_SKIP:
        if SKIP_UP == 1:
            r_off = on[:, None] * stride_rn + row * stride_rh + col * stride_rw + ch[None, :]
        else:
            r_off = on[:, None] * stride_rn + (row // SKIP_UP) * stride_rh + (col // SKIP_UP) * stride_rw + ch[None, :]
        if SKIP_U8:
            acc += tl.load(r_ptr + r_off, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
        else:
            acc += tl.load(r_ptr + r_off, mask=mask, other=0.0).to(tl.float32)
    if OUT_MAP == 1:
        acc = tl.minimum(tl.maximum((acc + 1.0) * 0.5, 0.0), 1.0)
    elif OUT_MAP == 2:
        acc = tl.minimum(tl.maximum(acc, 0.0), 1.0)
    y_off = on[:, None] * stride_yn + row * stride_yh + col * stride_yw + ch[None, :]
    if OUT_U8:
        tl.store(y_ptr + y_off, tl.floor(acc * 255.0 + 0.5).to(tl.uint8), mask=mask)
    else:
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask)


# tuned per shape, per power-of-two bucket of M (batch 1 and batch 8 tune apart) and per
# epilogue: every flag that changes the compiled kernel is in the key
_AUTOTUNE_KEY = [
    *("CIN", "COUT", "K", "M_BUCKET"),
    *("IN_U8", "FLAT_K", "HAS_PRELU", "HAS_SKIP", "SHUFFLE", "SHUFFLE_R", "SKIP_UP", "SKIP_U8", "OUT_MAP", "OUT_U8"),
]
_conv2d_fused_tuned = triton.autotune(configs=_GPU_CONFIGS, key=_AUTOTUNE_KEY)(_conv2d_fused_kernel)


SHUFFLE_FACTORS = (2, 4)  # pixel-shuffle factors the store supports


def _phase_major(cout: int, factor: int = 2) -> torch.Tensor:
    """Packed channel n' = phase * (cout // R^2) + c takes PyTorch's channel c * R^2 + phase."""
    rr = factor * factor
    oc = cout // rr
    return torch.tensor([c * rr + ph for ph in range(rr) for c in range(oc)])


def _check_factor(cout: int, factor: int) -> None:
    if factor not in SHUFFLE_FACTORS:
        raise ValueError(f"pixel shuffle factor must be one of {SHUFFLE_FACTORS}, got {factor}")
    if cout % (factor * factor):
        raise ValueError(f"pixel shuffle by {factor} needs Cout % {factor * factor} == 0, got {cout}")


def pack_weight(
    weight: torch.Tensor, dtype: torch.dtype | None = None, shuffle: bool = False, factor: int = 2
) -> torch.Tensor:
    """(Cout, Cin, K, K) in PyTorch's layout -> (K*K*Cin, Cout) row-major, the kernel's layout;
    with `shuffle`, output channels reordered phase-major for a shuffle by `factor` (see the header)."""
    cout, cin, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"conv2d_fused needs a square odd kernel, got {k}x{k2}")
    if shuffle:
        _check_factor(cout, factor)
        weight = weight[_phase_major(cout, factor).to(weight.device)]
    return weight.permute(2, 3, 1, 0).reshape(k * k * cin, cout).to(dtype or weight.dtype).contiguous()


def pack_bias(bias: torch.Tensor, shuffle: bool = False, factor: int = 2) -> torch.Tensor:
    """Bias in the packed channel order of `pack_weight(..., shuffle, factor)`, fp32."""
    if shuffle:
        _check_factor(bias.numel(), factor)
        bias = bias[_phase_major(bias.numel(), factor).to(bias.device)]
    return bias.float().contiguous()


def _check_nhwc(name: str, t: torch.Tensor) -> None:
    if t.dim() != 4:
        raise ValueError(f"{name} must be NHWC (4-D), got shape {tuple(t.shape)}")
    if t.stride(3) != 1:
        raise ValueError(f"{name} must have unit channel stride (NHWC), got strides {t.stride()}")


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(n)))


def conv2d_fused(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    bias: torch.Tensor,
    k: int,
    prelu: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
    shuffle: bool = False,
    out_map: bool | int = False,
    out_u8: bool = False,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    shuffle_factor: int = 2,
    skip_upsample: int = 1,
    config: dict | None = None,
) -> torch.Tensor:
    """Launch the fused conv on NHWC `x`; returns the NHWC output (written into `out` if given).

    x: (N, H, W, Cin) float or uint8 (uint8 is divided by 255 in the prologue).
    w_packed, bias: from `pack_weight` / `pack_bias` with the same `shuffle` flag and factor;
        weights in the compute dtype (fp32, fp16 or bf16), bias fp32.
    prelu: per output channel (per shuffled channel when `shuffle`), fp32.
    skip: NHWC tensor of the output's shape, added after bias/PReLU; with `skip_upsample` S > 1
        it has the output's size / S and is read nearest-upsampled (uint8 allowed: / 255).
    out_map: False/0 none; True/1: (y + 1) / 2 and clamp; 2: clamp to [0, 1].
    shuffle_factor: R of the pixel shuffle when `shuffle` (2 or 4).
    config: force one launch configuration instead of autotuning, e.g. {"BLOCK_M": 64,
        "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3} (tests check each
        autotune config for parity this way; num_warps/num_stages are ignored by the interpreter).
    """
    # 1. check
    _check_nhwc("x", x)
    n, h, w, cin = x.shape
    kkc, cout = w_packed.shape
    if kkc != k * k * cin:
        raise ValueError(f"packed weight has {kkc} rows; expected K*K*Cin = {k}*{k}*{cin}")
    if bias.shape != (cout,):
        raise ValueError(f"bias must be ({cout},), got {tuple(bias.shape)}")
    if shuffle:
        _check_factor(cout, shuffle_factor)
    r = shuffle_factor if shuffle else 1
    oc = cout // (r * r)
    oh, ow = r * h, r * w
    if int(out_map) not in (0, 1, 2):
        raise ValueError(f"out_map must be 0/False, 1/True or 2, got {out_map!r}")
    if prelu is not None and prelu.shape != (oc,):
        raise ValueError(f"prelu must be ({oc},), got {tuple(prelu.shape)}")
    if x.dtype == torch.uint8:
        if w_packed.dtype == torch.uint8:
            raise ValueError("weights must be floating point")
    elif x.dtype != w_packed.dtype:
        raise ValueError(f"x is {x.dtype} but weights are {w_packed.dtype}")
    for name, t in (("w_packed", w_packed), ("bias", bias), ("prelu", prelu), ("skip", skip), ("out", out)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device}, x on {x.device}")
    # 2. allocate
    if out is None:
        dt = torch.uint8 if out_u8 else (out_dtype or w_packed.dtype)
        out = torch.empty((n, oh, ow, oc), device=x.device, dtype=dt)
    _check_nhwc("out", out)
    if tuple(out.shape) != (n, oh, ow, oc):
        raise ValueError(f"out must be {(n, oh, ow, oc)}, got {tuple(out.shape)}")
    if skip is not None:
        _check_nhwc("skip", skip)
        su = skip_upsample
        if su < 1 or oh % su or ow % su:
            raise ValueError(f"skip_upsample must divide the output size {oh}x{ow}, got {su}")
        if tuple(skip.shape) != (n, oh // su, ow // su, oc):
            raise ValueError(f"skip must be {(n, oh // su, ow // su, oc)}, got {tuple(skip.shape)}")
        if skip.dtype == torch.uint8 and su == 1:
            raise ValueError("a uint8 skip is only read upsampled (the network input)")
    if n * h * w == 0:
        return out
    # 3. launch
    m = n * h * w
    block_n = _pow2(cout, 16, 128 if not INTERPRET else 256)
    r = skip if skip is not None else out
    a = prelu if prelu is not None else bias
    args = (
        x, w_packed, bias, a, r, out, m, h, w, cin, cout, triton.next_power_of_2(m),
        x.stride(0), x.stride(1), x.stride(2),
        r.stride(0), r.stride(1), r.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
    )  # fmt: skip
    flags = dict(
        K=k,
        IN_U8=x.dtype == torch.uint8,
        FLAT_K=cin < 16,
        HAS_PRELU=prelu is not None,
        HAS_SKIP=skip is not None,
        SHUFFLE=shuffle,
        OUT_MAP=int(out_map),
        OUT_U8=out_u8,
        DOT_PRECISION="ieee" if w_packed.dtype == torch.float32 else "tf32",
        BLOCK_N=block_n,
    )
    # always passed (not only when non-default) so the autotune key always finds them
    flags["SHUFFLE_R"] = shuffle_factor if shuffle else 2
    flags["SKIP_UP"] = skip_upsample if skip is not None else 1
    flags["SKIP_U8"] = skip is not None and skip_upsample != 1 and skip.dtype == torch.uint8
    if config is not None:
        cfg = dict(config)
        flags["BLOCK_N"] = cfg.pop("BLOCK_N", block_n)
        extra = {k: cfg.pop(k) for k in ("num_warps", "num_stages") if k in cfg}
        if INTERPRET:
            extra = {}
        grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(cout, flags["BLOCK_N"]))
        _conv2d_fused_kernel[grid](*args, **flags, **cfg, **extra)
    elif INTERPRET or x.device.type != "cuda" or not AUTOTUNE:
        block_m = 128
        block_k = 64 if cin < 16 else _pow2(cin, 16, 64 if INTERPRET else 32)
        grid = (triton.cdiv(m, block_m), triton.cdiv(cout, block_n))
        extra = {} if INTERPRET else {"num_warps": 4, "num_stages": 3}
        _conv2d_fused_kernel[grid](*args, **flags, BLOCK_M=block_m, BLOCK_K=block_k, **extra)
    else:

        def grid(meta):
            return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]))

        _conv2d_fused_tuned[grid](*args, **flags)
    return out
