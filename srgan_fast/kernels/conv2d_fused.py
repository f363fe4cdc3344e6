"""conv2d_fused: one Triton kernel for every op of the SRGAN generator.

What is fused (each piece chosen by a constexpr flag, applied while the accumulator is fp32):
  prologue   uint8 input -> x / 255 (IN_U8), or float input as stored
  main loop  implicit-GEMM KxK convolution, stride 1, zero padding K//2
  epilogue   + bias -> [PixelShuffle(R) by the store's index map, R = 2 or 4] -> [PReLU, per
             (shuffled) channel] -> [+ skip, or + the skip upsampled by S (SKIP_UP): read at
             (y // S, x // S), nearest (SKIP_MODE 0), or blended from 4 pixels as
             F.interpolate(mode="bilinear", align_corners=False) does (SKIP_MODE 1); uint8 skips
             divided by 255] -> [(y + 1) / 2 (OUT_MAP 1) or y as is (OUT_MAP 2), clamp to [0, 1]]
             -> [round to uint8]

Two main loops, one epilogue (`_epilogue`), one launcher (`conv2d_fused(..., impl=)`):
  "pointer"  the portable loop (any NVIDIA GPU, and the interpreter): BLOCK_M consecutive output
             pixels x BLOCK_N channels per program, operand tiles gathered by pointer with masks
             (the compiler turns them into cp.async). What the hot loop computes per step is kept
             small: CIN, K and BLOCK_K are compile-time, each row's pointer is formed once
             before the loop (int64) and a tap only adds a scalar offset to it, rows past the end
             are clamped instead of masked, and the weight's columns are zero-padded so its tile
             loads unmasked with 16-byte aligned rows.
  "tma"      Hopper tensor descriptors (a candidate until its CUDA tests have run on a card; the
             `triton_tma` backend): a program owns a TILE_H x TILE_W patch of one image, and each
             (tap, channel chunk) step is one TMA box [1, TILE_H, TILE_W, BLOCK_K] of the NHWC
             input at the tap's shift, out-of-frame pixels zero-filled by the copy engine (the
             conv's zero padding for free), and one box [BLOCK_K, BLOCK_N] of the packed weight.
             No per-element address or mask arithmetic in the loop at all.

Layout: activations NHWC with unit channel stride (any N/H/W strides); weights packed by
`pack_weight` as (K*K*CINP, COUTP) row-major: CINP = Cin rounded up to 8 below 16 channels (the
RGB head reads 16-byte pixel vectors: the launcher pads its input to CINP zero channels), COUTP
= Cout rounded up to the kernel's BLOCK_N (zero columns: unmasked, aligned weight tiles; the tail's
12 outputs are 16 columns, 32-byte rows). GEMM view: M = N*H*W output pixels, N = Cout, K =
K*K*CINP, looped as K*K taps x CINP chunks in one flat loop (so the compiler can pipeline it);
for the 8-channel head the K axis is walked flat over (tap, channel) pairs (FLAT_K), 8 taps of
8 channels per 64-wide step.
Pixel shuffle: `pack_weight(..., shuffle=True, factor=R)` / `pack_bias` order the conv's output
channels phase-major (n = (R i + j) * Cout/R^2 + c, where PyTorch has c * R^2 + R i + j), so a
tile stores runs of contiguous channels of one output pixel instead of a stride-R^2 scatter.

Limits: odd K; stride 1; Cout % R^2 == 0 when SHUFFLE; fp32 (IEEE dot, parity mode), fp16
and bf16 storage with fp32 accumulation. Pixel indices are int32 (N*H*W < 2**31 - 2**10 pixels
per launch, checked); element offsets are int64 (tensors beyond 2**31 elements are fine).

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
IMPLS = ("pointer", "tma")
MAX_PIXELS = 2**31 - 2**10  # output pixels of one launch (int32 pixel indices)
# accumulator registers per thread above which a config is not compiled: with the epilogue's
# index math on top, 128 fp32 accumulators per thread spilled (sm_90a, triton 3.6.0)
MAX_ACC_PER_THREAD = 64
# output rows per warp above which a config is not compiled for an epilogue that reads an
# upsampled skip (SKIP_UP > 1): it holds source rows/columns (and bilinear weights) per row, and
# 32 rows a warp spilled 32-1040 B (the compact and MSRResNet tails, sm_86 and sm_90a, triton 3.6.0);
# on mma.sync (sm_8x), whose K-loop is unrolled whole, also at most this many accumulators a
# thread there: 32 (the compact tail's 64x64 w4, 16 rows of 64 channels a warp) took 255
# registers and spilled 8 B with uint8 I/O on sm_86/89, 16 take 114-127
MAX_ROWS_PER_WARP_SKIP_UP = 16
MAX_ACC_SKIP_UP_MMA_SYNC = 16

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
        (64, 64, 8, 3),  # offered only to an epilogue that reads an upsampled skip (_SKIP_UP_ONLY)
    ]
]
# 8 rows a warp: the one config of the list that an upsampled skip leaves on mma.sync
_SKIP_UP_ONLY = {(64, 64, 8, 3)}

# TMA configs: an output patch of TILE_H x TILE_W pixels (BLOCK_M = their product) of one image;
# BLOCK_K (one 128-byte channel chunk) and BLOCK_N come from the launcher. One-row patches let
# wgmma read the input box straight from shared memory (a [1, 1, TW, BK] box reshapes in place);
# taller ones go through registers first (ldmatrix; kernel_check's "A:regs") but waste less at a
# frame's right edge when W is no multiple of TW: the card decides.
_TMA_CONFIGS = [
    triton.Config({"TILE_H": th, "TILE_W": tw}, num_warps=w, num_stages=s)
    for th, tw, w, s in [
        (1, 128, 4, 3),
        (1, 128, 4, 4),
        (1, 256, 8, 3),
        (1, 128, 8, 3),  # (the 256-output upsample: 64 accumulators a thread)
        (1, 64, 4, 3),
        (8, 16, 4, 3),
        (16, 16, 8, 3),
        (8, 8, 4, 4),
    ]
]


@triton.jit
def _epilogue(
    acc,  # (BLOCK_M, BLOCK_N) fp32 accumulator of the conv
    offs_n,  # (BLOCK_N,) packed output channels
    on,  # (BLOCK_M,) image index of each row, int32
    oh,  # (BLOCK_M,) conv output row
    ow,  # (BLOCK_M,) conv output column
    mask_m,  # (BLOCK_M,) rows that are real output pixels
    H,  # conv output rows (before the shuffle): the skip has H * R // SKIP_UP rows
    W,  # conv output columns
    b_ptr,
    a_ptr,
    r_ptr,
    y_ptr,
    COUT,
    stride_rn,
    stride_rh,
    stride_rw,
    stride_yn,
    stride_yh,
    stride_yw,
    HAS_PRELU: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    SHUFFLE: tl.constexpr,
    OUT_MAP: tl.constexpr,
    OUT_U8: tl.constexpr,
    SHUFFLE_R: tl.constexpr,
    SKIP_UP: tl.constexpr,
    SKIP_U8: tl.constexpr,
    SKIP_MODE: tl.constexpr,
):
    """bias -> [shuffle index map] -> [PReLU] -> [+ skip] -> [out map, clamp] -> store (int64 offsets)."""
    mask_n = offs_n < COUT
    acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    on64 = on.to(tl.int64)
    if SHUFFLE:
        # packed channel n = (R i + j) * (COUT // R^2) + c lands at output (R oh + i, R ow + j, c)
        OC = COUT // (SHUFFLE_R * SHUFFLE_R)
        phase = offs_n // OC
        ch = offs_n % OC
        di = phase // SHUFFLE_R
        dj = phase % SHUFFLE_R
        row = (SHUFFLE_R * oh[:, None] + di[None, :]).to(tl.int64)
        col = (SHUFFLE_R * ow[:, None] + dj[None, :]).to(tl.int64)
    else:
        ch = offs_n
        row = oh.to(tl.int64)[:, None] + 0 * offs_n[None, :]
        col = ow.to(tl.int64)[:, None] + 0 * offs_n[None, :]
    if HAS_PRELU:
        slope = tl.load(a_ptr + ch, mask=mask_n, other=0.0)
        acc = tl.where(acc >= 0, acc, acc * slope[None, :])
    mask = mask_m[:, None] & mask_n[None, :]
    if HAS_SKIP:
        if SKIP_MODE == 1 and SKIP_UP != 1:
            # bilinear, align_corners=False, as PyTorch: source s = (o + 0.5) / S - 0.5 clamped
            # below at 0, neighbours floor(s) and min(floor(s) + 1, size - 1), weights in fp32
            R_OUT: tl.constexpr = SHUFFLE_R if SHUFFLE else 1
            HS = H * R_OUT // SKIP_UP
            WS = W * R_OUT // SKIP_UP
            sy = tl.maximum((row.to(tl.float32) + 0.5) * (1.0 / SKIP_UP) - 0.5, 0.0)
            sx = tl.maximum((col.to(tl.float32) + 0.5) * (1.0 / SKIP_UP) - 0.5, 0.0)
            y0 = sy.to(tl.int64)  # sy >= 0: truncation is floor
            x0 = sx.to(tl.int64)
            wy1 = sy - y0.to(tl.float32)
            wx1 = sx - x0.to(tl.float32)
            wy0 = 1.0 - wy1
            wx0 = 1.0 - wx1
            y1 = tl.minimum(y0 + 1, HS - 1)
            x1 = tl.minimum(x0 + 1, WS - 1)
            base = on64[:, None] * stride_rn + ch[None, :]
            r00 = r_ptr + base + y0 * stride_rh + x0 * stride_rw
            r01 = r_ptr + base + y0 * stride_rh + x1 * stride_rw
            r10 = r_ptr + base + y1 * stride_rh + x0 * stride_rw
            r11 = r_ptr + base + y1 * stride_rh + x1 * stride_rw
            if SKIP_U8:
                v00 = tl.load(r00, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
                v01 = tl.load(r01, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
                v10 = tl.load(r10, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
                v11 = tl.load(r11, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
            else:
                v00 = tl.load(r00, mask=mask, other=0.0).to(tl.float32)
                v01 = tl.load(r01, mask=mask, other=0.0).to(tl.float32)
                v10 = tl.load(r10, mask=mask, other=0.0).to(tl.float32)
                v11 = tl.load(r11, mask=mask, other=0.0).to(tl.float32)
            acc += wy0 * (wx0 * v00 + wx1 * v01) + wy1 * (wx0 * v10 + wx1 * v11)
        else:
            if SKIP_UP == 1:
                r_off = on64[:, None] * stride_rn + row * stride_rh + col * stride_rw + ch[None, :]
            else:
                r_row = (row // SKIP_UP) * stride_rh + (col // SKIP_UP) * stride_rw
                r_off = on64[:, None] * stride_rn + r_row + ch[None, :]
            if SKIP_U8:
                acc += tl.load(r_ptr + r_off, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
            else:
                acc += tl.load(r_ptr + r_off, mask=mask, other=0.0).to(tl.float32)
    if OUT_MAP == 1:
        acc = tl.minimum(tl.maximum((acc + 1.0) * 0.5, 0.0), 1.0)
    elif OUT_MAP == 2:
        acc = tl.minimum(tl.maximum(acc, 0.0), 1.0)
    y_off = on64[:, None] * stride_yn + row * stride_yh + col * stride_yw + ch[None, :]
    if OUT_U8:
        tl.store(y_ptr + y_off, tl.floor(acc * 255.0 + 0.5).to(tl.uint8), mask=mask)
    else:
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _conv2d_fused_kernel(
    x_ptr,  # input activations, NHWC (N, H, W, CIN); float, or uint8 when IN_U8
    w_ptr,  # packed weights (K*K*CIN, >= COUT columns, row stride stride_wk), storage dtype
    b_ptr,  # bias (COUT,), fp32
    a_ptr,  # PReLU slopes, fp32: (COUT,) or (COUT // R^2,) when SHUFFLE; unused without HAS_PRELU
    r_ptr,  # skip input, NHWC with the output's shape (/ SKIP_UP); unused without HAS_SKIP
    y_ptr,  # output NHWC: (N, H, W, COUT), or (N, R H, R W, COUT // R^2) when SHUFFLE
    M,  # N * H * W output pixels (of the conv, before shuffling)
    H,
    W,
    COUT,
    M_BUCKET,  # next power of two of M: only an autotune key (batch 1 and batch 8 tune apart)
    stride_xn,
    stride_xh,
    stride_xw,
    stride_wk,  # packed weight row stride (elements; COUTP)
    stride_rn,
    stride_rh,
    stride_rw,
    stride_yn,
    stride_yh,
    stride_yw,
    CIN: tl.constexpr,  # input channels (CINP: the packed weight's per-tap rows)
    K: tl.constexpr,  # kernel size (odd)
    IN_U8: tl.constexpr,
    FLAT_K: tl.constexpr,  # walk K over (tap, channel) pairs: for CIN < 16 (the padded RGB head)
    X_CONTIG: tl.constexpr,  # x is contiguous NHWC: pixel m is at m * CIN (alignment known at compile time)
    EVEN_N: tl.constexpr,  # the weight has grid_n * BLOCK_N columns: its tile loads unmasked
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
    SKIP_MODE: tl.constexpr = 0,  # how an upsampled skip is read: 0 nearest, 1 bilinear (align_corners=False)
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # int32: the launcher bounds M
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    # rows past the end compute pixel M - 1 again (in bounds, never stored): no row mask in the loop
    m = tl.minimum(offs_m, M - 1)
    ow = m % W
    t = m // W
    oh = t % H
    on = t // H
    if X_CONTIG:
        sxw = CIN
        x_row = x_ptr + m.to(tl.int64) * CIN  # pixel (n, oh, ow), channel 0
    else:
        sxw = stride_xw
        x_row = x_ptr + on.to(tl.int64) * stride_xn + oh.to(tl.int64) * stride_xh + ow.to(tl.int64) * stride_xw
    sxh = W * CIN if X_CONTIG else stride_xh
    w_cols = w_ptr + offs_n[None, :]
    mask_wn = offs_n[None, :] < stride_wk  # used only without EVEN_N

    PAD: tl.constexpr = K // 2
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if FLAT_K:
        KK: tl.constexpr = K * K * CIN
        for k0 in range(0, KK, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)  # packed weight row = tap * CIN + c
            mask_k = offs_k < KK
            tap = offs_k // CIN
            dy = tap // K - PAD
            dx = tap % K - PAD
            ih = oh[:, None] + dy[None, :]
            iw = ow[:, None] + dx[None, :]
            valid = mask_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            x_off = dy * sxh + dx * sxw + offs_k % CIN
            xt = tl.load(x_row[:, None] + x_off[None, :], mask=valid, other=0)
            w_ptrs = w_cols + offs_k[:, None].to(tl.int64) * stride_wk
            if EVEN_N:
                wt = tl.load(w_ptrs, mask=mask_k[:, None], other=0.0)
            else:
                wt = tl.load(w_ptrs, mask=mask_k[:, None] & mask_wn, other=0.0)
            if IN_U8:
                xt = (xt.to(tl.float32) * (1.0 / 255.0)).to(wt.dtype)
            acc = tl.dot(xt, wt, acc, input_precision=DOT_PRECISION)
    else:
        NUM_KC: tl.constexpr = (CIN + BLOCK_K - 1) // BLOCK_K
        EVEN_K: tl.constexpr = CIN % BLOCK_K == 0
        for it in range(0, K * K * NUM_KC):
            tap = it // NUM_KC
            c0 = (it % NUM_KC) * BLOCK_K
            dy = tap // K - PAD
            dx = tap % K - PAD
            ih = oh + dy
            iw = ow + dx
            valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            offs_k = c0 + tl.arange(0, BLOCK_K)
            x_ptrs = x_row[:, None] + (dy * sxh + dx * sxw + offs_k)[None, :]
            w_ptrs = w_cols + (tap * CIN + offs_k)[:, None].to(tl.int64) * stride_wk
            if EVEN_K:
                xt = tl.load(x_ptrs, mask=valid[:, None], other=0)
                if EVEN_N:
                    wt = tl.load(w_ptrs)
                else:
                    wt = tl.load(w_ptrs, mask=mask_wn, other=0.0)
            else:
                mask_k = offs_k < CIN
                xt = tl.load(x_ptrs, mask=valid[:, None] & mask_k[None, :], other=0)
                wt = tl.load(w_ptrs, mask=mask_k[:, None] & mask_wn, other=0.0)
            if IN_U8:
                xt = (xt.to(tl.float32) * (1.0 / 255.0)).to(wt.dtype)
            acc = tl.dot(xt, wt, acc, input_precision=DOT_PRECISION)

    _epilogue(acc, offs_n, on, oh, ow, mask_m, H, W, b_ptr, a_ptr, r_ptr, y_ptr, COUT,
              stride_rn, stride_rh, stride_rw, stride_yn, stride_yh, stride_yw,
              HAS_PRELU, HAS_SKIP, SHUFFLE, OUT_MAP, OUT_U8, SHUFFLE_R, SKIP_UP, SKIP_U8, SKIP_MODE)  # fmt: skip


@triton.jit
def _conv2d_fused_tma_kernel(
    x_desc,  # tensor descriptor of the input, NHWC (N, H, W, CIN), block [1, TILE_H, TILE_W, BLOCK_K]
    w_desc,  # tensor descriptor of the packed weights (K*K*CIN, COUTP), block [BLOCK_K, BLOCK_N]
    b_ptr,  # bias (COUT,), fp32
    a_ptr,  # PReLU slopes (as in _conv2d_fused_kernel)
    r_ptr,  # skip input (as in _conv2d_fused_kernel)
    y_ptr,  # output (as in _conv2d_fused_kernel)
    N,
    H,
    W,
    COUT,
    M_BUCKET,  # next power of two of N * H * W: only an autotune key
    stride_rn,
    stride_rh,
    stride_rw,
    stride_yn,
    stride_yh,
    stride_yw,
    CIN: tl.constexpr,
    K: tl.constexpr,
    HAS_PRELU: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    SHUFFLE: tl.constexpr,
    OUT_MAP: tl.constexpr,
    OUT_U8: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
    SHUFFLE_R: tl.constexpr = 2,
    SKIP_UP: tl.constexpr = 1,
    SKIP_U8: tl.constexpr = False,
    SKIP_MODE: tl.constexpr = 0,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    tiles_w = tl.cdiv(W, TILE_W)
    tiles = tl.cdiv(H, TILE_H) * tiles_w
    n = pid_m // tiles
    r = pid_m % tiles
    h0 = (r // tiles_w) * TILE_H
    w0 = (r % tiles_w) * TILE_W
    n0 = pid_n * BLOCK_N
    PAD: tl.constexpr = K // 2
    NUM_KC: tl.constexpr = CIN // BLOCK_K  # the launcher makes BLOCK_K divide CIN
    BLOCK_M: tl.constexpr = TILE_H * TILE_W
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for it in range(0, K * K * NUM_KC):
        tap = it // NUM_KC
        c0 = (it % NUM_KC) * BLOCK_K
        # the tap's shifted patch; rows/columns outside the frame arrive as zeros (padding)
        xt = x_desc.load([n, h0 + tap // K - PAD, w0 + tap % K - PAD, c0]).reshape(BLOCK_M, BLOCK_K)
        wt = w_desc.load([it * BLOCK_K, n0])  # packed row tap * CIN + c0 = it * BLOCK_K
        acc = tl.dot(xt, wt, acc, input_precision=DOT_PRECISION)

    offs = tl.arange(0, BLOCK_M)
    oh = h0 + offs // TILE_W
    ow = w0 + offs % TILE_W
    mask_m = (oh < H) & (ow < W)
    on = n + 0 * offs
    _epilogue(acc, n0 + tl.arange(0, BLOCK_N), on, oh, ow, mask_m, H, W, b_ptr, a_ptr, r_ptr, y_ptr, COUT,
              stride_rn, stride_rh, stride_rw, stride_yn, stride_yh, stride_yw,
              HAS_PRELU, HAS_SKIP, SHUFFLE, OUT_MAP, OUT_U8, SHUFFLE_R, SKIP_UP, SKIP_U8, SKIP_MODE)  # fmt: skip


def stage_buffers(num_stages: int, capability: int) -> int:
    """Operand buffers Triton 3.6's software pipeliner keeps in shared memory for a K-loop of
    `num_stages`: all of them where wgmma reads its operands asynchronously (sm_90), one fewer
    with mma.sync (sm_8x: the MMA has read a buffer before the next copy lands in it)."""
    return num_stages if capability >= 90 else max(1, num_stages - 1)


def loop_shared_bytes(block_m: int, block_n: int, block_k: int, num_stages: int, itemsize: int, capability: int) -> int:
    """Shared memory of a pipelined K-loop of (BLOCK_M x BLOCK_K) and (BLOCK_K x BLOCK_N) operand
    tiles, plus 16 bytes of mbarriers per stage (TMA). An upper bound for the pointer, TMA and
    resblock kernels: benchmarks/kernel_check.py fails where a compiled kernel uses more."""
    tiles = (block_m * block_k + block_k * block_n) * itemsize
    return stage_buffers(num_stages, capability) * tiles + 16 * num_stages


def device_shared_limit(device: torch.device) -> tuple[int, int]:
    """(shared memory bytes one program may use, compute capability as 10 * major + minor) of a
    CUDA device: the opt-in per-block limit Triton checks at load (99 KB on sm_86/89, 163 KB on
    sm_80, 227 KB on sm_90)."""
    from triton.runtime import driver

    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return driver.active.utils.get_device_properties(index)["max_shared_mem"], 10 * major + minor


def _limits(named_args: dict, smem_limit: int | None, capability: int | None, tensor: str):
    """The shared-memory limit and capability a prune applies: given (kernel_check, tests), or
    read off the launch's CUDA device; (None, 90) when neither (no shared-memory pruning)."""
    if smem_limit is None:
        t = named_args.get(tensor)
        device = getattr(getattr(t, "base", t), "device", None)  # (a tensor descriptor's tensor)
        if isinstance(device, torch.device) and device.type == "cuda":
            smem_limit, cap = device_shared_limit(device)
            capability = capability or cap
    return smem_limit, capability or 90


def _itemsize(named_args: dict, tensor: str) -> int:
    t = named_args.get(tensor)
    t = getattr(t, "base", t)
    return getattr(getattr(t, "dtype", None), "itemsize", 2)


def _prune(configs, block_m, block_k, bn, itemsize, limit, capability, skip_up, skip_up_only=lambda c: False):
    """The configs that can run: registers (accumulators, an upsampled skip's rows) and shared
    memory within `limit`; at least one (the smallest in shared memory) is kept."""

    def smem(c):
        return loop_shared_bytes(block_m(c), bn, block_k(c), c.num_stages, itemsize, capability)

    def regs_ok(c):
        acc = block_m(c) * bn // (32 * c.num_warps)  # fp32 accumulators a thread
        if skip_up <= 1:
            return acc <= MAX_ACC_PER_THREAD and not skip_up_only(c)
        rows = block_m(c) // c.num_warps
        return acc <= (MAX_ACC_PER_THREAD if capability >= 90 else MAX_ACC_SKIP_UP_MMA_SYNC) and (
            rows <= MAX_ROWS_PER_WARP_SKIP_UP
        )

    keep = [c for c in configs if regs_ok(c)]
    keep = [c for c in keep or configs[:1] if limit is None or smem(c) <= limit]
    return keep or [min(configs, key=smem)]


def _prune_pointer(configs, named_args, smem_limit=None, capability=None, **kwargs):
    """The pointer loop's configs that can run on the launch's device (the autotuner's
    early_config_prune): the fp32 accumulator within MAX_ACC_PER_THREAD registers a thread; under
    an upsampled skip at most MAX_ROWS_PER_WARP_SKIP_UP rows a warp (and MAX_ACC_SKIP_UP_MMA_SYNC
    accumulators a thread on sm_8x), the _SKIP_UP_ONLY configs offered there alone; and the
    pipelined operand tiles within the device's shared memory per program. `smem_limit` and `capability` stand for
    a device other than the launch's (kernel_check's sm_86, the tests); by default they are read
    off the launch's CUDA device (none off CUDA: no shared-memory pruning)."""
    limit, cap = _limits(named_args, smem_limit, capability, "x_ptr")

    def skip_up_only(c):
        return (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages) in _SKIP_UP_ONLY

    return _prune(configs, lambda c: c.kwargs["BLOCK_M"], lambda c: c.kwargs["BLOCK_K"],
                  kwargs.get("BLOCK_N", named_args.get("BLOCK_N")), _itemsize(named_args, "w_ptr"), limit, cap,
                  kwargs.get("SKIP_UP", 1) if kwargs.get("HAS_SKIP") else 1, skip_up_only)  # fmt: skip


def _prune_tma(configs, named_args, smem_limit=None, capability=None, **kwargs):
    """As _prune_pointer, for the TMA loop's patches (BLOCK_M = TILE_H * TILE_W; BLOCK_K from the
    launcher)."""
    limit, cap = _limits(named_args, smem_limit, capability, "x_desc")
    bk = kwargs.get("BLOCK_K", named_args.get("BLOCK_K", 64))
    return _prune(configs, lambda c: c.kwargs["TILE_H"] * c.kwargs["TILE_W"], lambda c: bk,
                  kwargs.get("BLOCK_N", named_args.get("BLOCK_N")), _itemsize(named_args, "w_desc"), limit, cap,
                  kwargs.get("SKIP_UP", 1) if kwargs.get("HAS_SKIP") else 1)  # fmt: skip


def _tma_block_hook(nargs):
    """Autotuning runs configs of different tile shapes on the same descriptors: set their boxes."""
    nargs["x_desc"].block_shape = [1, nargs["TILE_H"], nargs["TILE_W"], nargs["BLOCK_K"]]
    nargs["w_desc"].block_shape = [nargs["BLOCK_K"], nargs["BLOCK_N"]]


for _c in _TMA_CONFIGS:
    _c.pre_hook = _tma_block_hook

# tuned per shape, per power-of-two bucket of M (batch 1 and batch 8 tune apart) and per
# epilogue: every flag that changes the compiled kernel is in the key
_EPILOGUE_KEY = ("HAS_PRELU", "HAS_SKIP", "SHUFFLE", "SHUFFLE_R", "SKIP_UP", "SKIP_U8", "SKIP_MODE", "OUT_MAP",
                 "OUT_U8")  # fmt: skip
_AUTOTUNE_KEY = [*("CIN", "COUT", "K", "M_BUCKET", "IN_U8", "FLAT_K", "X_CONTIG", "EVEN_N"), *_EPILOGUE_KEY]
# (descriptors carry no dtype Triton's autotuner keys on: DOT_PRECISION tells fp32 from fp16/bf16)
_TMA_AUTOTUNE_KEY = [*("CIN", "COUT", "K", "M_BUCKET", "DOT_PRECISION"), *_EPILOGUE_KEY]
_conv2d_fused_tuned = triton.autotune(
    configs=_GPU_CONFIGS, key=_AUTOTUNE_KEY, prune_configs_by={"early_config_prune": _prune_pointer}
)(_conv2d_fused_kernel)
_conv2d_fused_tma_tuned = triton.autotune(
    configs=_TMA_CONFIGS, key=_TMA_AUTOTUNE_KEY, prune_configs_by={"early_config_prune": _prune_tma}
)(_conv2d_fused_tma_kernel)


SHUFFLE_FACTORS = (2, 4)  # pixel-shuffle factors the store supports
SKIP_MODES = ("nearest", "bilinear")  # how an upsampled skip is read (SKIP_MODE 0, 1)


def padded_cin(cin: int) -> int:
    """Input channels as the kernel reads them: below 16, rounded up to 8 (an 8-channel pixel is
    one 16-byte vector in fp16; the launcher pads the input with zero channels), or to 16."""
    if cin <= 8:
        return 8
    return cin if cin >= 16 else 16


def block_n(cout: int) -> int:
    """The pointer kernel's BLOCK_N for `cout` outputs (the TMA kernel's too)."""
    return _pow2(cout, 16, 128)


def padded_cout(cout: int) -> int:
    """Packed weight columns: `cout` rounded up to a multiple of block_n(cout)."""
    bn = block_n(cout)
    return -(-cout // bn) * bn


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
    """(Cout, Cin, K, K) in PyTorch's layout -> (K*K*CINP, COUTP) row-major, the kernel's layout,
    zero-padded to `padded_cin(Cin)` channels per tap and `padded_cout(Cout)` columns; with
    `shuffle`, output channels reordered phase-major for a shuffle by `factor` (see the header)."""
    cout, cin, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"conv2d_fused needs a square odd kernel, got {k}x{k2}")
    if shuffle:
        _check_factor(cout, factor)
        weight = weight[_phase_major(cout, factor).to(weight.device)]
    cinp, coutp = padded_cin(cin), padded_cout(cout)
    w = weight.permute(2, 3, 1, 0)  # (K, K, Cin, Cout)
    if (cinp, coutp) != (cin, cout):
        w = torch.nn.functional.pad(w, (0, coutp - cout, 0, cinp - cin))
    return w.reshape(k * k * cinp, coutp).to(dtype or weight.dtype).contiguous()


def pack_bias(bias: torch.Tensor, shuffle: bool = False, factor: int = 2) -> torch.Tensor:
    """Bias in the packed channel order of `pack_weight(..., shuffle, factor)`, fp32 (not padded:
    its length is the op's Cout)."""
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


def _pad_channels(x: torch.Tensor, cinp: int, dtype: torch.dtype) -> torch.Tensor:
    """x (N, H, W, Cin) -> contiguous (N, H, W, cinp) in `dtype`, zero channels appended; uint8 is
    divided by 255 in fp32 first (the kernel's IN_U8 prologue, so the same bits)."""
    n, h, w, cin = x.shape
    xp = torch.zeros((n, h, w, cinp), dtype=dtype, device=x.device)
    xp[..., :cin] = x.float().mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x
    return xp


def tma_eligible(x: torch.Tensor, w_packed: torch.Tensor, cin: int) -> str | None:
    """Why the TMA loop cannot run this launch (None: it can). TMA needs 16-byte aligned bases
    and strides, a float input (no uint8 prologue) and whole 16-byte channel chunks."""
    if not hasattr(tl, "make_tensor_descriptor"):
        return f"triton {triton.__version__} has no tensor descriptors"
    if x.dtype == torch.uint8:
        return "uint8 input (the TMA loop has no uint8 prologue)"
    e = x.element_size()
    if tma_block_k(cin, e) < 16:
        return f"{cin} input channels (the TMA loop needs a power-of-two chunk of >= 16 channels dividing Cin)"
    if x.data_ptr() % 16 or w_packed.data_ptr() % 16:
        return "a base address not 16-byte aligned"
    if any((s * e) % 16 for s in _tma_strides(x)[:3]) or (w_packed.stride(0) * e) % 16:
        return f"strides {x.stride()} not 16-byte multiples"
    return None


def tma_block_k(cin: int, itemsize: int) -> int:
    """Channels per TMA step: the largest power of two dividing Cin, at most one 128-byte swizzle
    row (64 fp16, 32 fp32); below 16 the wgmma K cannot take it (TMA is then not eligible)."""
    bk = 128 // itemsize
    while bk > 1 and cin % bk:
        bk //= 2
    return bk


def _tma_strides(x: torch.Tensor) -> list[int]:
    """x's strides with those of size-1 dimensions (never stepped, so arbitrary in torch, e.g. 1
    after a permute) replaced by the dense value: a descriptor needs 16-byte multiples."""
    st = list(x.stride())
    for i in (2, 1, 0):
        if x.shape[i] == 1:
            st[i] = st[i + 1] * x.shape[i + 1]
    return st


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
    impl: str = "pointer",
    skip_mode: str = "nearest",
) -> torch.Tensor:
    """Launch the fused conv on NHWC `x`; returns the NHWC output (written into `out` if given).

    x: (N, H, W, Cin) float or uint8 (uint8 is divided by 255 in the prologue).
    w_packed, bias: from `pack_weight` / `pack_bias` with the same `shuffle` flag and factor;
        weights in the compute dtype (fp32, fp16 or bf16), bias fp32. Cout is the bias's length.
    prelu: per output channel (per shuffled channel when `shuffle`), fp32.
    skip: NHWC tensor of the output's shape, added after bias/PReLU; with `skip_upsample` S > 1
        it has the output's size / S and is read upsampled by `skip_mode` (uint8 allowed: / 255).
    out_map: False/0 none; True/1: (y + 1) / 2 and clamp; 2: clamp to [0, 1].
    shuffle_factor: R of the pixel shuffle when `shuffle` (2 or 4).
    skip_mode: "nearest" (the skip read at (y // S, x // S)) or "bilinear" (F.interpolate's
        bilinear, align_corners=False); the same thing when S is 1.
    config: force one launch configuration instead of autotuning, e.g. {"BLOCK_M": 64,
        "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3}, or for impl "tma"
        {"TILE_H": 8, "TILE_W": 16, ...} (tests check each autotune config for parity this way;
        num_warps/num_stages are ignored by the interpreter).
    impl: "pointer" (portable) or "tma" (tensor descriptors, Hopper; a launch TMA cannot take,
        see `tma_eligible`, runs the pointer loop).
    """
    # 1. check
    _check_nhwc("x", x)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    n, h, w, cin = x.shape
    cinp = padded_cin(cin)
    kkc, wcols = w_packed.shape
    cout = bias.shape[0] if bias.dim() == 1 else -1
    if kkc != k * k * cinp:
        raise ValueError(f"packed weight has {kkc} rows; expected K*K*Cin = {k}*{k}*{cinp} (pack_weight pads Cin)")
    if bias.dim() != 1 or not 0 < cout <= wcols or wcols != padded_cout(cout):
        raise ValueError(f"bias must be (Cout,) for a packed weight of {wcols} columns, got {tuple(bias.shape)}")
    if not w_packed.is_contiguous():
        raise ValueError("w_packed must be contiguous row-major (from pack_weight)")
    if shuffle:
        _check_factor(cout, shuffle_factor)
    r = shuffle_factor if shuffle else 1
    oc = cout // (r * r)
    oh, ow = r * h, r * w
    if skip_mode not in SKIP_MODES:
        raise ValueError(f"skip_mode must be one of {SKIP_MODES}, got {skip_mode!r}")
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
    if n * h * w > MAX_PIXELS:
        raise ValueError(f"{n}x{h}x{w} = {n * h * w} pixels in one launch; at most {MAX_PIXELS} (split the batch)")
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
    if cinp != cin:  # the head: RGB as 8-channel (16-byte) pixels, uint8 scaled on the way
        x = _pad_channels(x, cinp, w_packed.dtype)
        cin = cinp
    # 3. launch
    m = n * h * w
    r_t = skip if skip is not None else out
    a = prelu if prelu is not None else bias
    flags = dict(
        CIN=cin,
        K=k,
        HAS_PRELU=prelu is not None,
        HAS_SKIP=skip is not None,
        SHUFFLE=shuffle,
        OUT_MAP=int(out_map),
        OUT_U8=out_u8,
        DOT_PRECISION="ieee" if w_packed.dtype == torch.float32 else "tf32",
        # always passed (not only when non-default) so the autotune key always finds them
        SHUFFLE_R=shuffle_factor if shuffle else 2,
        SKIP_UP=skip_upsample if skip is not None else 1,
        SKIP_U8=skip is not None and skip_upsample != 1 and skip.dtype == torch.uint8,
        # bilinear only where it differs from nearest (an upsampled skip): no new variant otherwise
        SKIP_MODE=int(skip is not None and skip_upsample != 1 and skip_mode == "bilinear"),
    )
    tail = (r_t.stride(0), r_t.stride(1), r_t.stride(2), out.stride(0), out.stride(1), out.stride(2))
    cfg = dict(config or {})
    bn = cfg.pop("BLOCK_N", block_n(cout))
    extra = {key: cfg.pop(key) for key in ("num_warps", "num_stages") if key in cfg}
    if INTERPRET:
        extra = {}
    if impl == "tma":
        if tma_eligible(x, w_packed, cin) is None:
            _launch_tma(x, w_packed, bias, a, r_t, out, n, h, w, cout, m, tail, flags, bn, cfg, extra, config)
            return out
        if config is not None and "BLOCK_M" not in cfg:  # a TMA config for a launch the pointer loop takes
            config, bn = None, block_n(cout)
    args = (
        x, w_packed, bias, a, r_t, out, m, h, w, cout, triton.next_power_of_2(m),
        x.stride(0), x.stride(1), x.stride(2), w_packed.stride(0), *tail,
    )  # fmt: skip
    contiguous = x.is_contiguous()
    flags.update(IN_U8=x.dtype == torch.uint8, FLAT_K=cin < 16, X_CONTIG=contiguous, BLOCK_N=bn)
    flags["EVEN_N"] = wcols % bn == 0
    if config is not None:
        grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(cout, bn))
        _conv2d_fused_kernel[grid](*args, **flags, **cfg, **extra)
    elif INTERPRET or x.device.type != "cuda" or not AUTOTUNE:
        block_m = 128
        block_k = 64 if cin < 16 else _pow2(cin, 16, 64 if INTERPRET else 32)
        grid = (triton.cdiv(m, block_m), triton.cdiv(cout, bn))
        extra = {} if INTERPRET else {"num_warps": 4, "num_stages": 3}
        _conv2d_fused_kernel[grid](*args, **flags, BLOCK_M=block_m, BLOCK_K=block_k, **extra)
    else:

        def grid(meta):
            return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]))

        _conv2d_fused_tuned[grid](*args, **flags)
    return out


def _launch_tma(x, w_packed, bias, a, r_t, out, n, h, w, cout, m, tail, flags, bn, cfg, extra, config):
    from triton.tools.tensor_descriptor import TensorDescriptor

    bk = cfg.pop("BLOCK_K", tma_block_k(x.shape[3], x.element_size()))
    th, tw = cfg.get("TILE_H", 8), cfg.get("TILE_W", 16)
    x_desc = TensorDescriptor(x, list(x.shape), _tma_strides(x), [1, th, tw, bk])
    w_desc = TensorDescriptor(w_packed, list(w_packed.shape), list(w_packed.stride()), [bk, bn])
    args = (x_desc, w_desc, bias, a, r_t, out, n, h, w, cout, triton.next_power_of_2(m), *tail)
    flags = dict(flags, BLOCK_N=bn, BLOCK_K=bk)

    def grid(meta):
        tiles = n * triton.cdiv(h, meta["TILE_H"]) * triton.cdiv(w, meta["TILE_W"])
        return (tiles, triton.cdiv(cout, meta["BLOCK_N"]))

    if config is not None or INTERPRET or x.device.type != "cuda" or not AUTOTUNE:
        cfg.setdefault("TILE_H", th)
        cfg.setdefault("TILE_W", tw)
        if not INTERPRET and config is None:
            extra = {"num_warps": 4, "num_stages": 3}
        _conv2d_fused_tma_kernel[grid](*args, **flags, **cfg, **extra)
    else:
        _conv2d_fused_tma_tuned[grid](*args, **flags)
