"""resblock_fused: one Triton kernel for a whole SRGAN residual block (a candidate; unmeasured).

What is fused: y = x + conv2(PReLU(conv1(x) + b1)) + b2, both convs KxK (K odd, 3 in SRGAN),
stride 1, zero padding K//2, C -> C channels, BN already folded into (w1, b1) and (w2, b2) by
the plan (srgan_fast.plan.fold_bn). Two launches of conv2d_fused write the intermediate
t = PReLU(conv1(x) + b1) to a full activation tensor and read it back; here it never makes
that round trip.

How: the frame is cut into TILE_H x TILE_W output tiles. For each tile a program
  phase 1  computes t on the tile plus a K//2-pixel border (the border is recomputed by the
           neighbouring tiles: (TILE + 2R)^2 / TILE^2 of conv1's work, +27% at 16x16, K = 3),
           sets t to zero outside the frame (conv2 zero-pads t, not x) and stores it in the
           program's scratch slot;
  barrier  tl.debug_barrier() (a CTA-wide bar.sync: the slot's writes are visible to every
           thread of the program before conv2 reads neighbours' pixels);
  phase 2  computes conv2 on the tile from the slot, + b2, + x (the skip is the block input,
           read at the output pixel), and stores y;
  barrier  again, before the next tile of the same program overwrites the slot.

Why a scratch in global memory: Triton exposes no shared memory that can be indexed with the
shifted windows of a convolution, so the tile lives in a per-program slot of a global buffer.
The grid is persistent: SMs x the CTAs per SM that the compiled config's registers and shared
memory allow (`ctas_per_sm`, read off the loaded kernel; 132 x 2 = 264 for the 16x16 w4 config
on an H100 under triton 3.6.0), so every program is resident and none waits for a slot. The
scratch is programs x (TILE_H + 2R) x (TILE_W + 2R) x C elements, rewritten in place tile after
tile: on a GPU it stays in L2 (11 MB for 264 programs of 16x16 fp16 tiles at C = 64), and the
block's HBM traffic is x read once and y written once. Whether that beats two conv2d_fused
launches is to be measured on a GPU (benchmarks/profile_ops.py has the row).

Layout: activations NHWC with unit channel stride (any N/H/W strides); weights packed by
conv2d_fused.pack_weight as (K*K*C, padded_cout(C)) row-major; biases and PReLU slopes fp32, per channel.
The scratch holds t in the storage dtype (as the two-launch path stores it), so fp32 storage
is the parity mode and fp16/bf16 round t once, exactly as the unfused plan does.

Limits: Cin == Cout == C; both convs the same odd K; no shuffle/out_map/uint8 (the body's
blocks need none); fp32 (IEEE dot), fp16, bf16 storage with fp32 accumulation. Pixel offsets
are int64.

Same math, in plain PyTorch: srgan_fast.reference.resblock_fused_reference.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .conv2d_fused import _check_nhwc, _pow2, padded_cin, padded_cout  # the launchers share their input checks

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# SRGAN_FAST_AUTOTUNE=0: one fixed GPU config (tests: each autotuned variant costs compiles)
AUTOTUNE = os.environ.get("SRGAN_FAST_AUTOTUNE", "1") != "0"
# H100/H200 (sm_90) per-SM limits, the defaults of `ctas_per_sm` (the static kernel check uses them)
SM90 = dict(regs=65536, smem=228 * 1024, threads=2048, ctas=32, smem_reserved=1024)

# GPU configs: output tile TILE_H x TILE_W, BLOCK_M pixels x BLOCK_N output channels x
# BLOCK_K input channels per dot. Unmeasured guesses, to be pruned on a card; few, because
# `srgan-fast bench` pays every config's compile per (C, M bucket, dtype) inside its timeout.
# (8x8 tiles recompute 56% of conv1 on the border, 16x16 27%.) One list per MMA, and
# `_prune_resblock` offers a device its own: on sm_8x (mma.sync) Triton 3.6 unrolls each phase's
# 18-step K-loop whole, and three of the four wgmma configs reach 255 registers and spill 8-40 B
# there, so the mma.sync list's 4-warp configs take half the K chunk or one buffer less (168-182
# registers, no spills on sm_80/86/89: benchmarks/kernel_check.py).
_WGMMA = [  # sm_90
    (16, 16, 64, 64, 32, 4, 3),
    (16, 16, 128, 64, 32, 8, 3),
    (14, 14, 64, 64, 64, 4, 3),
    (8, 16, 64, 64, 32, 4, 3),
]
_MMA_SYNC = [  # sm_8x
    (16, 16, 64, 64, 16, 4, 3),
    (16, 16, 64, 64, 32, 4, 2),
    (16, 16, 128, 64, 32, 8, 3),
    (8, 16, 64, 64, 32, 4, 2),
]
_GPU_CONFIGS = [
    triton.Config({"TILE_H": th, "TILE_W": tw, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for th, tw, bm, bn, bk, w, s in dict.fromkeys(_WGMMA + _MMA_SYNC)
]


def _prune_resblock(configs, named_args, smem_limit=None, capability=None, **kwargs):
    """The configs of the device's MMA (sm_90: _WGMMA, sm_8x: _MMA_SYNC) whose pipelined operand
    tiles fit its shared memory per program (the autotuner's early_config_prune, and the
    launcher's list of persistent grids). `smem_limit` and `capability` stand for a device other
    than the launch's (kernel_check, the tests); by default read off the launch's CUDA device."""
    from .conv2d_fused import _itemsize, _limits, loop_shared_bytes

    limit, cap = _limits(named_args, smem_limit, capability, "x_ptr")
    size = _itemsize(named_args, "w1_ptr")
    ours = set(_WGMMA if cap >= 90 else _MMA_SYNC)

    def key(c):
        kw = c.kwargs
        return (kw["TILE_H"], kw["TILE_W"], kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], c.num_warps, c.num_stages)

    def smem(c):
        kw = c.kwargs
        return loop_shared_bytes(kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], c.num_stages, size, cap)

    keep = [c for c in configs if key(c) in ours and (limit is None or smem(c) <= limit)]
    return keep or [min(configs, key=smem)]


@triton.jit
def _conv_kxk(
    a_ptr,  # the input: pixel m's tap (dy, dx) reads its C channels (unit stride) at
    a_off0,  # a_ptr + (a_off0 + ih * stride_h + iw * stride_w) * stride_c,
    row_h,  # with ih = row_h[m] + dy - OFF, iw = row_w[m] + dx - OFF; row_h, row_w, row_ok: (BLOCK_M,)
    row_w,
    row_ok,  # pixels to compute (the others read zeros)
    stride_h,
    stride_w,
    stride_c,
    H,  # with CLIP: taps outside 0 <= ih < H, 0 <= iw < W read zeros (the conv's zero padding)
    W,
    w_ptr,  # weights packed (K*K*C, padded_cout(C)), storage dtype
    stride_wk,
    offs_n,  # (BLOCK_N,) output channels
    mask_n,
    C: tl.constexpr,
    K: tl.constexpr,
    OFF: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    CLIP: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """The KxK conv of C input channels at BLOCK_M pixels, for BLOCK_N output channels, as a
    (BLOCK_M, BLOCK_N) fp32 accumulator (bias not added): the K-loop both phases run."""
    num_kc: tl.constexpr = (C + BLOCK_K - 1) // BLOCK_K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for it in range(0, K * K * num_kc):
        tap = it // num_kc
        offs_k = (it % num_kc) * BLOCK_K + tl.arange(0, BLOCK_K)
        mask_k = offs_k < C
        ih = row_h + (tap // K - OFF)
        iw = row_w + (tap % K - OFF)
        valid = row_ok
        if CLIP:
            valid = valid & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a_off = (a_off0 + ih * stride_h + iw * stride_w) * stride_c
        at = tl.load(a_ptr + a_off[:, None] + offs_k[None, :], mask=valid[:, None] & mask_k[None, :], other=0.0)
        w_off = (tap * C + offs_k).to(tl.int64) * stride_wk
        wt = tl.load(w_ptr + w_off[:, None] + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = tl.dot(at, wt, acc, input_precision=DOT_PRECISION)
    return acc


@triton.jit
def _resblock_fused_kernel(
    x_ptr,  # block input NHWC (N, H, W, C), storage dtype; also the skip
    w1_ptr,  # conv1 weights packed (K*K*C, padded_cout(C)), storage dtype
    b1_ptr,  # conv1 bias (C,), fp32 (BN folded)
    a_ptr,  # PReLU slopes (C,), fp32
    w2_ptr,  # conv2 weights packed (K*K*C, padded_cout(C)), storage dtype
    b2_ptr,  # conv2 bias (C,), fp32 (BN folded)
    y_ptr,  # output NHWC (N, H, W, C)
    s_ptr,  # scratch: one slot of (TILE_H + 2R) * (TILE_W + 2R) * C per program, storage dtype
    N,
    H,
    W,
    M_BUCKET,  # next power of two of N * H * W: only an autotune key
    stride_xn,
    stride_xh,
    stride_xw,
    stride_yn,
    stride_yh,
    stride_yw,
    stride_wk,  # packed weight row stride (elements: padded_cout(C))
    C: tl.constexpr,  # channels (in and out of both convs)
    K: tl.constexpr,  # kernel size of both convs (odd)
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 parity; ignored for fp16/bf16 operands
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    PAD: tl.constexpr = K // 2
    EW: tl.constexpr = TILE_W + 2 * PAD
    E: tl.constexpr = (TILE_H + 2 * PAD) * EW  # pixels of the tile plus its border
    P: tl.constexpr = TILE_H * TILE_W
    tiles_h = tl.cdiv(H, TILE_H)
    tiles_w = tl.cdiv(W, TILE_W)
    num_tiles = N * tiles_h * tiles_w
    slot = s_ptr + pid.to(tl.int64) * E * C  # this program's scratch, reused tile after tile
    tile = pid
    while tile < num_tiles:  # (a while loop: the interpreter cannot range() over runtime bounds)
        tw = tile % tiles_w
        t2 = tile // tiles_w
        n = (t2 // tiles_h).to(tl.int64)
        h0 = ((t2 % tiles_h) * TILE_H).to(tl.int64)
        w0 = (tw * TILE_W).to(tl.int64)

        # phase 1: t = PReLU(conv1(x) + b1) on the tile and its border, zero outside the frame
        for e0 in range(0, E, BLOCK_M):
            offs_e = e0 + tl.arange(0, BLOCK_M)
            mask_e = offs_e < E
            eh = h0 - PAD + offs_e // EW
            ew = w0 - PAD + offs_e % EW
            inside = mask_e & (eh >= 0) & (eh < H) & (ew >= 0) & (ew < W)
            for n0 in range(0, C, BLOCK_N):
                offs_n = n0 + tl.arange(0, BLOCK_N)
                mask_n = offs_n < C
                # conv1 of x at (eh + dy - PAD, ew + dx - PAD), zero outside the frame
                acc = _conv_kxk(x_ptr, n * stride_xn, eh, ew, mask_e, stride_xh, stride_xw, 1, H, W, w1_ptr, stride_wk,
                                offs_n, mask_n, C, K, PAD, BLOCK_M, BLOCK_N, BLOCK_K, True, DOT_PRECISION)  # fmt: skip
                acc += tl.load(b1_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
                slope = tl.load(a_ptr + offs_n, mask=mask_n, other=0.0)
                acc = tl.where(acc >= 0, acc, acc * slope[None, :])
                acc = tl.where(inside[:, None], acc, 0.0)  # conv2's zero padding of t
                s_off = offs_e[:, None] * C + offs_n[None, :]
                tl.store(slot + s_off, acc.to(s_ptr.dtype.element_ty), mask=mask_e[:, None] & mask_n[None, :])
        tl.debug_barrier()  # the slot is complete before any thread reads a neighbour's pixel

        # phase 2: y = conv2(t) + b2 + x on the tile, t read from the slot
        for p0 in range(0, P, BLOCK_M):
            offs_p = p0 + tl.arange(0, BLOCK_M)
            py = offs_p // TILE_W
            px = offs_p % TILE_W
            oh = h0 + py
            ow = w0 + px
            mask_p = (offs_p < P) & (oh < H) & (ow < W)
            for n0 in range(0, C, BLOCK_N):
                offs_n = n0 + tl.arange(0, BLOCK_N)
                mask_n = offs_n < C
                # conv2 of t: output (py, px) + tap offset (dy, dx) is slot pixel (py + PAD + dy, px + PAD + dx),
                # at (py + dy) * EW + px + dx with dy, dx in [0, K) (the slot holds the border; no clipping)
                acc = _conv_kxk(slot, 0, py, px, mask_p, EW, 1, C, H, W, w2_ptr, stride_wk,
                                offs_n, mask_n, C, K, 0, BLOCK_M, BLOCK_N, BLOCK_K, False, DOT_PRECISION)  # fmt: skip
                acc += tl.load(b2_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
                mask = mask_p[:, None] & mask_n[None, :]
                x_off = n * stride_xn + oh * stride_xh + ow * stride_xw
                acc += tl.load(x_ptr + x_off[:, None] + offs_n[None, :], mask=mask, other=0.0).to(tl.float32)
                y_off = n * stride_yn + oh * stride_yh + ow * stride_yw
                tl.store(y_ptr + y_off[:, None] + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # every read of the slot is done before the next tile overwrites it
        tile += nprog


# tuned per channel count, kernel size, power-of-two bucket of N*H*W and dot precision; the
# storage dtype is in Triton's autotune key already (it keys on the tensors' dtypes)
_AUTOTUNE_KEY = ["C", "K", "M_BUCKET", "DOT_PRECISION"]
_resblock_fused_tuned = triton.autotune(
    configs=_GPU_CONFIGS, key=_AUTOTUNE_KEY, prune_configs_by={"early_config_prune": _prune_resblock}
)(_resblock_fused_kernel)

# the interpreter runs one program at a time in numpy: one chunk per phase is fastest; the
# 8x8 tile makes small test frames cross tile borders
_INTERPRET_CONFIG = {"TILE_H": 8, "TILE_W": 8, "BLOCK_M": 128}
_GPU_DEFAULT_CONFIG = {"TILE_H": 16, "TILE_W": 16, "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4,
                       "num_stages": 3}  # fmt: skip


def ctas_per_sm(n_regs: int, shared: int, num_warps: int, limits: dict | None = None) -> int:
    """How many programs of a compiled kernel fit on one SM at once (registers are allocated per
    warp in units of 256; each CTA also holds the system's reserved shared memory)."""
    lim = dict(SM90, **(limits or {}))
    regs_per_warp = -(-max(n_regs, 1) * 32 // 256) * 256
    by_regs = lim["regs"] // (regs_per_warp * num_warps)
    by_smem = lim["smem"] // (shared + lim["smem_reserved"])
    by_threads = lim["threads"] // (32 * num_warps)
    return max(1, min(by_regs, by_smem, by_threads, lim["ctas"]))


_PROGRAMS: dict = {}  # (config, device, dtype, C, K) -> programs of the persistent grid


def _device_limits(device: torch.device) -> tuple[int, dict]:
    """SMs and the per-SM limits of `device` (torch's per-multiprocessor figures; Triton's
    max_shared_mem / max_num_regs are per-block limits)."""
    p = torch.cuda.get_device_properties(device)
    lim = dict(
        regs=getattr(p, "regs_per_multiprocessor", SM90["regs"]),
        smem=getattr(p, "shared_memory_per_multiprocessor", SM90["smem"]),
        threads=getattr(p, "max_threads_per_multi_processor", SM90["threads"]),
    )
    return p.multi_processor_count, lim


def _programs_for(cfg: dict, args: list, flags: dict, device: torch.device) -> int:
    """Programs of the persistent grid for one config: SMs x the CTAs its compiled kernel lets
    reside per SM (registers, shared memory, threads), so every program is resident at once
    (the scratch holds one slot per program; more programs would only queue)."""
    key = (tuple(sorted(cfg.items())), device, args[0].dtype, flags["C"], flags["K"])
    if key not in _PROGRAMS:
        kernel = _resblock_fused_kernel.warmup(*args, **flags, **cfg, grid=(1,))
        kernel._init_handles()
        sms, lim = _device_limits(device)
        _PROGRAMS[key] = sms * ctas_per_sm(kernel.n_regs, kernel.metadata.shared, cfg.get("num_warps", 4), lim)
    return _PROGRAMS[key]


def resblock_fused(
    x: torch.Tensor,
    w1_packed: torch.Tensor,
    b1: torch.Tensor,
    prelu: torch.Tensor,
    w2_packed: torch.Tensor,
    b2: torch.Tensor,
    k: int = 3,
    out: torch.Tensor | None = None,
    programs: int | None = None,
    config: dict | None = None,
) -> torch.Tensor:
    """Launch the fused residual block on NHWC `x`; returns y = x + conv2(PReLU(conv1(x) + b1)) + b2.

    x: (N, H, W, C) in the storage dtype (fp32, fp16 or bf16), the weights' dtype; C >= 16.
    w1_packed, w2_packed: conv2d_fused.pack_weight of (C, C, k, k) weights, BN folded.
    b1, b2, prelu: (C,), fp32.
    out: (N, H, W, C) buffer to write (else a fresh tensor in x's dtype).
    programs: at most this many programs (persistent grid; default on a GPU: SMs x the CTAs per
        SM the compiled config allows, see `ctas_per_sm`; in the interpreter one per tile); the
        scratch holds one tile slot per program.
    config: force one launch configuration instead of autotuning, e.g. {"TILE_H": 16,
        "TILE_W": 16, "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4,
        "num_stages": 3}; missing keys take the defaults (num_warps/num_stages are ignored by
        the interpreter).
    """
    # 1. check
    _check_nhwc("x", x)
    n, h, w, c = x.shape
    if k < 1 or k % 2 == 0:
        raise ValueError(f"resblock_fused needs an odd kernel size, got {k}")
    if padded_cin(c) != c:
        raise ValueError(f"resblock_fused needs C >= 16 channels, got {c}")
    for name, t in (("w1_packed", w1_packed), ("w2_packed", w2_packed)):
        if tuple(t.shape) != (k * k * c, padded_cout(c)) or not t.is_contiguous():
            raise ValueError(f"{name} must be (K*K*C, padded_cout(C)) = {(k * k * c, padded_cout(c))} from "
                             f"pack_weight, got {tuple(t.shape)}")  # fmt: skip
        if t.dtype != x.dtype:
            raise ValueError(f"x is {x.dtype} but {name} is {t.dtype}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"resblock_fused takes fp32, fp16 or bf16 activations, got {x.dtype}")
    for name, t in (("b1", b1), ("prelu", prelu), ("b2", b2)):
        if tuple(t.shape) != (c,):
            raise ValueError(f"{name} must be ({c},), got {tuple(t.shape)}")
        if t.dtype != torch.float32:
            raise ValueError(f"{name} must be float32, got {t.dtype}")
    for name, t in (("w1_packed", w1_packed), ("b1", b1), ("prelu", prelu), ("w2_packed", w2_packed),
                    ("b2", b2), ("out", out)):  # fmt: skip
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device}, x on {x.device}")
    if programs is not None and programs < 1:
        raise ValueError(f"programs must be >= 1, got {programs}")
    # 2. allocate
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    _check_nhwc("out", out)
    if tuple(out.shape) != (n, h, w, c):
        raise ValueError(f"out must be {(n, h, w, c)}, got {tuple(out.shape)}")
    if out.dtype != x.dtype:
        raise ValueError(f"out must be {x.dtype}, got {out.dtype}")
    if n * h * w == 0:
        return out
    # 3. launch
    pad = k // 2
    on_gpu = x.device.type == "cuda" and not INTERPRET
    flags = dict(C=c, K=k, DOT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32")
    args = [x, w1_packed, b1, prelu, w2_packed, b2, out, x, n, h, w, triton.next_power_of_2(n * h * w),
            x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
            w1_packed.stride(0)]  # fmt: skip
    if w2_packed.stride(0) != w1_packed.stride(0):
        raise ValueError("w1_packed and w2_packed must have the same layout")

    def n_tiles(th, tw):
        return n * triton.cdiv(h, th) * triton.cdiv(w, tw)

    def slot(th, tw):
        return (th + 2 * pad) * (tw + 2 * pad) * c

    def cap(cfg):
        if programs is not None:
            return programs
        return _programs_for(cfg, args, flags, x.device) if on_gpu else 1 << 30  # interpreter: one per tile

    if config is not None or not on_gpu or not AUTOTUNE:
        if config is not None:
            cfg = dict(config)
        elif not on_gpu:
            cfg = dict(_INTERPRET_CONFIG)
        else:
            cfg = dict(_GPU_DEFAULT_CONFIG)
        cfg.setdefault("TILE_H", 16)
        cfg.setdefault("TILE_W", 16)
        cfg.setdefault("BLOCK_M", 64)
        cfg.setdefault("BLOCK_N", _pow2(c, 16, 256 if INTERPRET else 64))
        cfg.setdefault("BLOCK_K", _pow2(c, 16, 64 if INTERPRET else 32))
        if INTERPRET:
            cfg.pop("num_warps", None)
            cfg.pop("num_stages", None)
        th, tw = cfg["TILE_H"], cfg["TILE_W"]
        grid = (min(cap(cfg), n_tiles(th, tw)),)
        args[7] = torch.empty(grid[0] * slot(th, tw), dtype=x.dtype, device=x.device)
        _resblock_fused_kernel[grid](*args, **flags, **cfg)
    else:
        # each config's grid from its own occupancy; one scratch large enough for every config
        # (autotuning runs them all on the same arguments)
        grids = {}
        for cf in _prune_resblock(_GPU_CONFIGS, dict(zip(_resblock_fused_kernel.arg_names, args)), **flags):
            cfg = dict(cf.kwargs, num_warps=cf.num_warps, num_stages=cf.num_stages)
            grids[tuple(sorted(cf.kwargs.items()))] = min(cap(cfg), n_tiles(cf.kwargs["TILE_H"], cf.kwargs["TILE_W"]))
        args[7] = torch.empty(
            max(g * slot(dict(key)["TILE_H"], dict(key)["TILE_W"]) for key, g in grids.items()),
            dtype=x.dtype, device=x.device,
        )  # fmt: skip

        def grid(meta):
            return (grids[tuple(sorted((key, meta[key]) for key in _GPU_CONFIGS[0].kwargs))],)

        _resblock_fused_tuned[grid](*args, **flags)
    return out
