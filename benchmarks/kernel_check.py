"""kernel_check: what the engine's Triton kernels compile to on Ampere, Ada and Hopper, without a GPU.

Every launch the Triton backends (triton, triton_fused, and triton_tma where the card has TMA)
make for a real batch (batch 8 of 270x480 fp16 by default) of each family's plan (srresnet_x4,
the compact realesr-animevideov3, msrresnet_x4, rrdbnet_x4plus; random weights: a binary depends
on shapes only) is recorded on meta tensors, and compiled with every autotune config the
launcher's autotuner would try on each architecture (its own prune, given that architecture's
shared memory), for sm_80 (A100), sm_86 (RTX 30xx, A6000), sm_89 (RTX 40xx, L4, L40S) and
sm_90a (H100/H200), by this machine's Triton and its bundled ptxas (pin triton==3.6.0: the
card's; other versions move registers by up to 56 per thread). For each variant it prints
registers, local memory (spills), shared memory, CTAs and warps per SM and the limiter, the
grid, and the innermost MMA loop of the SASS: instructions per iteration, MMAs (HMMA =
mma.sync on sm_8x, HGMMA = wgmma on sm_90a), operand copies (LDGSTS = cp.async, UTMALDG = TMA),
plain global loads and their width, and whether wgmma is left in flight across iterations.

It fails (exit 1) on:
  - a config that cannot launch on the architecture: shared memory per program over its opt-in
    limit, more than 1,024 threads or 65,536 registers per program, or shared memory above the
    prune's own estimate (the prune would let an over-limit config through elsewhere),
  - a variant that spills (local memory, STL/LDL),
  - lost tensor-core MMA: a conv without mma.sync (sm_8x) or wgmma (sm_90a), or a hot loop
    without cp.async / TMA operand copies,
  - a conv hot loop with plain global loads (operands gathered into registers instead of copied
    by cp.async/TMA), or element-wise 8/16-bit loads in any hot loop (scalar gathers); in a loop
    unrolled whole only loads before its last operand copy count (the epilogue's bias, slope and
    skip loads are scheduled into the last iteration there),
  - a TMA or wgmma path reachable on sm_8x: triton_tma offered there (its `requires` must refuse
    the card), or a TMA/wgmma instruction in an sm_8x binary,
  - a target missed: the best variant of an op kind above its instructions-per-MMA bound
    (TARGETS, per architecture; the issues' numbers).
It also reports, without failing, wgmma whose A operand comes from registers (A:regs), the
configs each architecture's prune drops, and the persistent grid resblock_fused's launcher sizes
from a kernel's registers and shared memory on each architecture's reference card.

    .venv/bin/python benchmarks/kernel_check.py                     # 4 families x 4 archs (3.5 min on 2 cores)
    .venv/bin/python benchmarks/kernel_check.py --arch 86 --model srresnet_x4
    .venv/bin/python benchmarks/kernel_check.py --io u8 --json out.json
    .venv/bin/python benchmarks/kernel_check.py --arch 90 --backends triton_tma --keep sass/
    .venv/bin/python benchmarks/kernel_check.py --cache ~/.cache/srgan_fast/kernel_check   # reuse binaries

Instructions per MMA are per MMA instruction: an sm_8x HMMA.16816 is 2,048 multiply-adds a warp,
an sm_90a HGMMA.64xNx16 is 256 x N (16,384 at N = 64), so the MAC/ins column compares the two.
Static facts, not timings: only a card decides between close configs (benchmarks/card_session.sh).
The shared kernel_report tool (../shared/tools/kernel_report) was the model for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARD_TRITON = "3.6.0"  # the Triton of the lent H100/H200 machines (torch 2.11)

# Per-architecture limits: the CUDA C++ Programming Guide's table of technical specifications
# per compute capability (NVIDIA's cccl arch_traits hold the same numbers): shared memory one
# program may opt into and per SM (1 KB of which each resident CTA reserves), resident threads
# and CTAs per SM; 65,536 registers per SM and per program and 255 per thread everywhere. SMs
# are a card's, not the architecture's: one reference card each, for the grid figures.
_ARCH_TABLE = [  # arch, name, reference card, its SMs, shared KB a program (opt-in) / an SM, threads / CTAs an SM
    (80, "sm_80", "A100", 108, 163, 164, 2048, 32),
    (86, "sm_86", "RTX 3090", 82, 99, 100, 1536, 16),
    (89, "sm_89", "RTX 4090", 128, 99, 100, 1536, 24),
    (90, "sm_90a", "H100 SXM", 132, 227, 228, 2048, 32),
]
ARCHS = {
    arch: dict(sm=sm, card=card, sms=sms, smem_block=kb * 1024, smem_sm=kb_sm * 1024, threads_sm=threads, ctas_sm=ctas)
    for arch, sm, card, sms, kb, kb_sm, threads, ctas in _ARCH_TABLE
}
REGS_SM = REGS_BLOCK = 65536
REGS_THREAD = 255
THREADS_BLOCK = 1024
SMEM_RESERVED = 1024  # per resident CTA, sm_80 and later
# best variant of each op kind (per family): at most this many hot-loop instructions per MMA
# instruction (sm_90a: wgmma, the kernels issue's figures; sm_8x: mma.sync, issue 28's)
TARGETS = {90: {"body_conv": 25, "head": 150}, 80: {"body_conv": 40}, 86: {"body_conv": 40}, 89: {"body_conv": 40}}
# the body's 3x3 convs of each family, one op kind for the targets
KIND_GROUP = dict.fromkeys(
    ("block_conv1", "block_conv2", "trunk_end", "body_conv", "dense_conv", "dense_out", "rrdb_out"), "body_conv"
)
FAMILIES = {  # family -> the preset whose plan is checked
    "srresnet": "srresnet_x4",
    "compact": "realesr-animevideov3",
    "msrresnet": "msrresnet_x4",
    "rrdbnet": "rrdbnet_x4plus",
}
MMA_OPS = ("HGMMA", "HMMA")
COPY_OPS = ("LDGSTS", "UTMALDG")


# ----------------------------------------------------------------------------------------------
# a driver that reports a GPU of the architecture and launches nothing


def _offline_driver(arch: int):
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase

    class Offline(DriverBase):
        @classmethod
        def is_active(cls):
            return False

        def map_python_to_cpp_type(self, ty):
            return ty

        def get_current_target(self):
            return GPUTarget("cuda", arch, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

        def get_benchmarker(self):
            raise RuntimeError("kernel_check compiles only")

        def get_current_device(self):
            # one "device" per architecture: a JIT function keeps its target per device
            return arch

        def get_current_stream(self, device=None):
            return 0

    triton.runtime.driver.set_active(Offline())


def offered(backend: str, arch: int) -> str | None:
    """Why the backend's own `requires` refuses a CUDA GPU of this architecture (None: offered)."""
    from unittest import mock

    import torch

    from srgan_fast import backends as runners

    with mock.patch("torch.cuda.get_device_capability", return_value=(arch // 10, arch % 10)):
        return runners.get_backend(backend).requires(torch.device("cuda"))


class _Recorder:
    """Stands in for a kernel or autotuner: `rec[grid](*args, **kw)` records the call."""

    def __init__(self, name, log, op):
        self.name, self.log, self.op = name, log, op

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.log.append(dict(kernel=self.name, args=args, kw=kw, op=self.op.get("op")))

        return launch


_RANDOM = {  # other families' published shapes, by name
    "rrdbnet_x4plus": "srgan_fast.families.rrdbnet:random_rrdbnet",
    "msrresnet_x4": "srgan_fast.families.msrresnet:random_msrresnet",
}


def record(model: str, batch: int, size: tuple[int, int], dtype: str, io: str, backends: list[str]):
    """The launches each backend makes for one batch, recorded on meta tensors."""
    import torch

    from srgan_fast import backends as runners
    from srgan_fast.kernels import conv2d_fused as cf
    from srgan_fast.kernels import resblock_fused as rf
    from srgan_fast.plan import compile_plan

    if model in _RANDOM:  # another family's published shape, random weights (the binaries depend on shapes only)
        mod, fn = _RANDOM[model].split(":")
        net = getattr(__import__(mod, fromlist=[fn]), fn)()
    else:
        try:
            from srgan_fast.families.srresnet.arch import Generator

            net = Generator(model)
        except ValueError:
            from srgan_fast.families.srvgg_compact import random_compact

            net = random_compact(model)
    plan = compile_plan(net)
    dt = dict(fp16=torch.float16, bf16=torch.bfloat16, fp32=torch.float32)[dtype]
    log, cur = [], {}
    kernels = {
        (cf, "_conv2d_fused_kernel"): "pointer",
        (cf, "_conv2d_fused_tuned"): "pointer",
        (cf, "_conv2d_fused_tma_kernel"): "tma",
        (cf, "_conv2d_fused_tma_tuned"): "tma",
        (rf, "_resblock_fused_kernel"): "resblock",
        (rf, "_resblock_fused_tuned"): "resblock",
    }
    saved = {key: getattr(*key) for key in kernels}
    for (mod, attr), name in kernels.items():
        setattr(mod, attr, _Recorder(name, log, cur))
    out = []
    try:
        for backend in backends:
            cls = runners.get_backend(backend).runner

            class Tagged(cls):
                def conv2d_fused(self, op, *a, **k):
                    cur["op"] = op
                    return super().conv2d_fused(op, *a, **k)

                def resblock_fused(self, op, *a, **k):
                    cur["op"] = op
                    return super().resblock_fused(op, *a, **k)

            log.clear()
            x = torch.empty((batch, *size, 3), dtype=torch.uint8 if io == "u8" else dt, device="meta")
            Tagged(plan, torch.device("meta"), dt)(x, io == "u8")
            out += [dict(rec, backend=backend) for rec in log]
    finally:
        for key, fn in saved.items():
            setattr(*key, fn)
    return out, cf, rf


# ----------------------------------------------------------------------------------------------
# variants: one per (distinct binary, autotune config the architecture's prune keeps)

# what each kernel's autotune configs set (the rest of a launch's keywords come from the launcher)
_CONFIG_KEYS = {
    "pointer": ("BLOCK_M", "BLOCK_K", "num_warps", "num_stages"),
    "tma": ("TILE_H", "TILE_W", "num_warps", "num_stages"),
    "resblock": ("TILE_H", "TILE_W", "BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages"),
}


def groups_of(launches):
    """Launches grouped by compiled binary (backend, kernel, argument specialization, constexprs)."""
    from triton.runtime.jit import MockTensor
    from triton.tools.tensor_descriptor import TensorDescriptor

    def mock(a):
        import torch

        if isinstance(a, TensorDescriptor):
            return TensorDescriptor(MockTensor(a.base.dtype, list(a.base.shape)), a.shape, a.strides, a.block_shape)
        if isinstance(a, torch.Tensor):
            return MockTensor(a.dtype, list(a.shape))
        return a

    groups = {}
    for rec in launches:
        kw = {k: v for k, v in rec["kw"].items() if k not in _CONFIG_KEYS[rec["kernel"]]}
        args = [mock(a) for a in rec["args"]]
        # the binary depends on dtypes, int specialization (==1, %16) and constexprs
        spec = tuple(
            (str(a.dtype) if isinstance(a, MockTensor) else
             ("desc", str(a.base.dtype)) if isinstance(a, TensorDescriptor) else
             (a == 1, a % 16 == 0) if isinstance(a, int) else a)
            for a in args
        )  # fmt: skip
        key = (rec["backend"], rec["kernel"], spec, tuple(sorted((k, repr(v)) for k, v in kw.items())))
        g = groups.setdefault(key, dict(rec=rec, args=args, kw=kw, ops=[], key=key))
        g["ops"].append(rec["op"])
    return list(groups.values())


def variants(groups, cf, rf, arch: int, family: str):
    """Each group expanded into the configs its autotuner tries on `arch`: the launcher's own
    prune, given the architecture's shared memory per program and compute capability."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    lim = dict(smem_limit=ARCHS[arch]["smem_block"], capability=arch)
    jobs, pruned = [], []
    for g in groups:
        kern, kw = g["rec"]["kernel"], g["kw"]
        fn, every, prune = {
            "pointer": (cf._conv2d_fused_kernel, cf._GPU_CONFIGS, cf._prune_pointer),
            "tma": (cf._conv2d_fused_tma_kernel, cf._TMA_CONFIGS, cf._prune_tma),
            "resblock": (rf._resblock_fused_kernel, rf._GPU_CONFIGS, rf._prune_resblock),
        }[kern]
        named = dict(zip(fn.arg_names, g["args"]))
        kept = prune(every, named, **lim, **kw)
        x = g["args"][0]
        size = (x.base if isinstance(x, TensorDescriptor) else g["args"][1]).dtype.itemsize
        # configs never meant for this launch (not reported as pruned): the pointer loop's
        # upsampled-skip configs elsewhere, resblock's other MMA's list
        skip_up = kw.get("HAS_SKIP") and kw.get("SKIP_UP", 1) > 1
        others = set() if skip_up or kern != "pointer" else cf._SKIP_UP_ONLY
        if kern == "resblock":
            others = set(rf._MMA_SYNC if arch >= 90 else rf._WGMMA) - set(rf._WGMMA if arch >= 90 else rf._MMA_SYNC)
        for c in every:
            cfg = dict(c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages)
            if c not in kept:
                sig = tuple(c.kwargs[k] for k in ("TILE_H", "TILE_W", "BLOCK_M", "BLOCK_N", "BLOCK_K") if k in c.kwargs)
                if sig + (c.num_warps, c.num_stages) not in others:
                    pruned.append(f"{label(g)[0]} {cfg_str(cfg)}")
                continue
            bm = cfg.get("BLOCK_M") or cfg["TILE_H"] * cfg["TILE_W"]
            bk = cfg.get("BLOCK_K") or kw["BLOCK_K"]
            bn = cfg.get("BLOCK_N") or kw["BLOCK_N"]
            est = cf.loop_shared_bytes(bm, bn, bk, c.num_stages, size, arch)
            # the same binary whichever backend or family launched it: compiled and read once (_unique)
            binary = (arch, g["key"][1:], tuple(sorted((k, repr(v)) for k, v in cfg.items())))
            jobs.append(dict(g=g, fn=fn, cfg=cfg, binary=binary, arch=arch, family=family, est_shared=est))
    return jobs, sorted(set(pruned))


def _unique(jobs):
    """Indices of the first job of each distinct binary, and for every job the index of its binary's
    job: triton, triton_tma and triton_fused launch several identical kernels (head, tail, ...)."""
    first, of = {}, []
    for i, j in enumerate(jobs):
        of.append(first.setdefault(j["binary"], i))
    return sorted(set(of)), of


# ----------------------------------------------------------------------------------------------
# compile one variant and read its SASS

_INSTR = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)([.A-Z0-9_x]*)\s*([^;]*);", re.M)


def _bin(name):
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _disassemble(cubin: bytes) -> tuple[str, str]:
    """cuobjdump's SASS and resource usage of a cubin; with --cache, kept under the cubin's hash
    (the SASS listing is most of a warm run's time)."""
    import gzip
    import hashlib

    kept = os.path.join(_CACHE, "sass", hashlib.sha256(cubin).hexdigest() + ".gz") if _CACHE else None
    if kept and os.path.exists(kept):
        with gzip.open(kept, "rt") as f:
            sass, res = f.read().split("\0")
        return sass, res
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        sass = subprocess.run([_bin("cuobjdump"), "-sass", path], capture_output=True, text=True, check=True).stdout
        res = subprocess.run([_bin("cuobjdump"), "-res-usage", path], capture_output=True, text=True).stdout
    if kept:  # written whole, then renamed: concurrent runs share the folder
        os.makedirs(os.path.dirname(kept), exist_ok=True)
        tmp = f"{kept}.{os.getpid()}.tmp"
        with gzip.open(tmp, "wt") as f:
            f.write(sass + "\0" + res)
        os.replace(tmp, kept)
    return sass, res


_ARCH_NOW = None


def _use_arch(arch: int):
    global _ARCH_NOW
    if _ARCH_NOW != arch:
        _offline_driver(arch)
        _ARCH_NOW = arch


def _macs(op: str, suf: str) -> int:
    """Multiply-adds one warp issues with an MMA instruction: HMMA.MNK (m16n8k16: 2,048),
    HGMMA.64xNxK (a warpgroup's 64 x N x K over its 4 warps)."""
    if op == "HMMA":
        m = re.match(r"\.(16)(8)(16|8|4)", suf)
        return 16 * 8 * int(m.group(3)) if m else 0
    m = re.match(r"\.64x(\d+)x(\d+)", suf)
    return 64 * int(m.group(1)) * int(m.group(2)) // 4 if m else 0


def analyse(job, keep=None):
    import triton

    from srgan_fast.kernels import resblock_fused as rf

    g, cfg, arch = job["g"], dict(job["cfg"]), job["arch"]
    a = ARCHS[arch]
    _use_arch(arch)
    kw = dict(g["kw"])
    if g["rec"]["kernel"] == "tma":  # the autotuner's pre_hook sets the boxes per config
        x_desc, w_desc = g["args"][0], g["args"][1]
        x_desc.block_shape = [1, cfg["TILE_H"], cfg["TILE_W"], kw["BLOCK_K"]]
        w_desc.block_shape = [kw["BLOCK_K"], kw["BLOCK_N"]]
    try:
        ck = job["fn"].warmup(*g["args"], grid=(1,), **kw, **cfg)
    except Exception as e:  # a config that does not compile is a finding, not a crash
        return dict(error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    sass, res = _disassemble(ck.asm["cubin"])
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", res)
    regs, stack, _static, local = map(int, m.groups()) if m else (0, 0, 0, 0)
    found = _INSTR.findall(sass)
    ins = [(int(ad, 16), op, suf) for ad, _pred, op, suf, _ in found]
    # innermost loops that hold MMAs: conditional backward branches (an unconditional one is the
    # return from an out-of-line slow path, e.g. an mbarrier wait retried at the kernel's end)
    loops = []
    for ad, pred, op, _suf, rest in found:
        t = re.search(r"0x([0-9a-f]+)", rest)
        if op == "BRA" and pred and t and int(t.group(1), 16) <= int(ad, 16):
            loops.append((int(t.group(1), 16), int(ad, 16)))
    hot = [lp for lp in set(loops) if any(lp[0] <= ad <= lp[1] and op in MMA_OPS for ad, op, _ in ins)]
    hot = sorted(lp for lp in hot if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in hot))
    total = Counter(op for _, op, _ in ins)
    unrolled = not hot and total["HGMMA"] + total["HMMA"] > 0
    if unrolled:  # a constant trip count unrolled whole: the span from the first copy to the last MMA
        lo = min(ad for ad, op, _ in ins if op in (*COPY_OPS, *MMA_OPS))
        hot = [(lo, max(ad for ad, op, _ in ins if op in MMA_OPS))]
    loop_rows = []
    for lo, hi in hot:
        body = [(ad, op, suf) for ad, op, suf in ins if lo <= ad <= hi]
        mix = Counter(op for _, op, _ in body)
        # loads that can feed an MMA: in a loop unrolled whole, those before its last operand copy
        # (the epilogue's bias/slope/skip loads are scheduled among the last iteration's MMAs)
        last = max((ad for ad, op, _ in body if op in COPY_OPS), default=hi) if unrolled else hi
        ldg = [suf for ad, op, suf in body if op == "LDG" and ad <= last]
        # element-wise gathers of 8/16-bit operands (scalar loads)
        narrow = sum(1 for suf in ldg if re.search(r"\.(U16|S16|U8|S8)\b", suf))
        macs = sum(_macs(op, suf) for _, op, suf in body if op in MMA_OPS)
        loop_rows.append(dict(n=len(body), mma=mix["HGMMA"] + mix["HMMA"], cpasync=mix["LDGSTS"],
                              tma=mix["UTMALDG"], ldg=len(ldg), narrow_ldg=narrow, local=mix["STL"] + mix["LDL"],
                              macs=macs, unrolled=unrolled))  # fmt: skip
    pend = [int(p) for p in re.findall(r"warp_group_dot_wait.*?pendings = (\d+)", ck.asm.get("ttgir", ""))]
    # wgmma reads A from shared memory (a descriptor) or from registers (loaded there first)
    a_regs = any(op == "HGMMA" and not rest.split(",")[1].strip().startswith("gdesc")
                 for _a, _p, op, _s, rest in found)  # fmt: skip
    shared = ck.metadata.shared
    warps = cfg["num_warps"]
    lim = dict(regs=REGS_SM, smem=a["smem_sm"], threads=a["threads_sm"], ctas=a["ctas_sm"], smem_reserved=SMEM_RESERVED)
    ctas = rf.ctas_per_sm(regs, shared, warps, lim)
    limits = {
        "regs": REGS_SM // (-(-max(regs, 1) * 32 // 256) * 256 * warps),
        "smem": a["smem_sm"] // (shared + SMEM_RESERVED),
        "warps": a["threads_sm"] // (32 * warps),
        "ctas": a["ctas_sm"],
    }
    limiter = "/".join(k for k, v in limits.items() if v == ctas) or "-"
    if keep:
        tag = re.sub(r"[^A-Za-z0-9]+", "_", f"{a['sm']}_{job['family']}_{g['rec']['backend']}_{job['label']}_"
                     f"{cfg_str(cfg)}")  # fmt: skip
        with open(os.path.join(keep, tag + ".sass"), "w") as f:
            f.write(sass)
        with open(os.path.join(keep, tag + ".ttgir"), "w") as f:
            f.write(ck.asm.get("ttgir", ""))
    return dict(regs=regs, local=local + stack, shared=shared, ctas_per_sm=ctas, warps_per_sm=ctas * warps,
                limiter=limiter, hgmma=total["HGMMA"], hmma=total["HMMA"], cpasync=total["LDGSTS"],
                tma=total["UTMALDG"] + total["UTMASTG"], stl_ldl=total["STL"] + total["LDL"], loops=loop_rows,
                async_mma=max(pend or [0]) > 0, a_regs=a_regs, triton=triton.__version__)  # fmt: skip


def cfg_str(c):
    if "TILE_H" in c and "BLOCK_M" in c:
        s = f"T{c['TILE_H']}x{c['TILE_W']} {c['BLOCK_M']}x{c['BLOCK_N']}x{c['BLOCK_K']}"
    elif "TILE_H" in c:
        s = f"T{c['TILE_H']}x{c['TILE_W']}"
    else:
        s = f"{c['BLOCK_M']}x{c['BLOCK_K']}"
    return f"{s} w{c['num_warps']}s{c['num_stages']}"


def label(g):
    kinds = Counter(o.kind for o in g["ops"])
    name = " + ".join(f"{k} x{v}" if v > 1 else k for k, v in kinds.items())
    kw = g["kw"]
    if g["rec"]["kernel"] == "resblock":
        x = g["args"][0]
        return name, f"2x {kw['K']}x{kw['K']} {kw['C']}->{kw['C']} @{x.shape[1]}x{x.shape[2]}"
    x = g["args"][0]
    shape = list(x.shape) if not hasattr(x, "base") else list(x.shape)
    cout = g["args"][9]
    ep = [
        e
        for e, on in (
            ("prelu", kw.get("HAS_PRELU")),
            ("skip", kw.get("HAS_SKIP")),
            ("shuffle", kw.get("SHUFFLE")),
            ("map", kw.get("OUT_MAP")),
            ("u8out", kw.get("OUT_U8")),
            ("u8in", kw.get("IN_U8")),
        )
        if on
    ]
    return name, f"{kw['K']}x{kw['K']} {kw['CIN']}->{cout} @{shape[1]}x{shape[2]} {','.join(ep)}"  # fmt: skip


_JOBS: list = []


def _run(i):
    return analyse(_JOBS[i], _KEEP)


_KEEP = None
_CACHE = None


def _verdicts(row, arch):
    """What fails in one compiled variant on `arch` (empty: it passes)."""
    a, kern, bad = ARCHS[arch], row["kernel"], []
    warps = row["config"]["num_warps"]
    if row["shared"] > a["smem_block"]:
        bad.append(f"cannot launch: {row['shared']} B shared > {a['smem_block']} B a program may use on {a['sm']}")
    if 32 * warps > THREADS_BLOCK:
        bad.append(f"cannot launch: {32 * warps} threads a program")
    if row["regs"] * 32 * warps > REGS_BLOCK:
        bad.append(f"cannot launch: {row['regs']} regs x {32 * warps} threads > {REGS_BLOCK} a program")
    if row["shared"] > row["est_shared"]:
        bad.append(f"shared {row['shared']} B above the prune's estimate {row['est_shared']} B")
    if row["local"] or row["stl_ldl"]:
        bad.append(f"spills {row['local']} B")
    if arch >= 90 and row["hgmma"] == 0:
        bad.append("no wgmma")
    if arch < 90:
        if row["hmma"] == 0:
            bad.append("no mma.sync")
        if row["hgmma"] or row["tma"] or kern == "tma":
            bad.append(f"TMA/wgmma path reachable on {a['sm']}")
    if not row["loops"]:
        bad.append("no MMA loop found")
    for lp in row["loops"]:
        if lp["cpasync"] + lp["tma"] == 0:
            bad.append("hot loop without cp.async/TMA")
        if lp["narrow_ldg"]:
            bad.append(f"{lp['narrow_ldg']} narrow loads in the hot loop")
        elif kern != "resblock" and lp["ldg"]:  # (resblock's unrolled phases hold phase 1's epilogue)
            bad.append(f"{lp['ldg']} plain loads in the hot loop")
    return bad


def _parse_list(text, known, what, ap):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        ap.error(f"--{what} is empty")
    return items if known is None else [known.get(t, t) for t in items]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--model", default=",".join(FAMILIES),
                    help="comma-separated families (srresnet, compact, msrresnet, rrdbnet: their published shapes) or "
                    "presets (a generator or compact preset, rrdbnet_x4plus, msrresnet_x4); default all four "
                    "families")  # fmt: skip
    ap.add_argument("--arch", default=",".join(str(a) for a in ARCHS),
                    help="comma-separated compute capabilities x10 among 80, 86, 89, 90 (default all four: A100, "
                    "RTX 30xx, RTX 40xx/L4/L40S, H100/H200)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=8, help="frames per batch (default 8)")
    ap.add_argument("--size", default="270x480", help="LR frame HxW (default 270x480)")
    ap.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="storage dtype (default fp16)")
    ap.add_argument("--io", choices=("float", "u8"), default="float", help="float frames (the bench) or uint8 (video)")
    ap.add_argument("--backends", default="triton,triton_tma,triton_fused",
                    help="comma-separated Triton backends to record (default all three; each architecture compiles "
                    "those whose `requires` accepts it)")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles (default: all cores)")
    ap.add_argument("--json", help="write every variant's facts to this file")
    ap.add_argument("--keep", help="write each variant's SASS and TTGIR into this folder")
    ap.add_argument("--cache", help="keep Triton's compile cache in this folder (default: a fresh one per run; "
                    "Triton keys it by kernel source, constexprs, options and versions)")  # fmt: skip
    ap.add_argument(
        "--no-targets", action="store_true", help="report the instructions-per-MMA targets, never fail on them"
    )
    args = ap.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size takes HxW, e.g. 270x480, got {args.size!r}")
    if args.batch < 1 or h < 1 or w < 1:
        ap.error("--batch and --size must be positive")
    try:
        archs = [int(a) for a in _parse_list(args.arch, None, "arch", ap)]
    except ValueError:
        ap.error(f"--arch takes compute capabilities x10, e.g. 86,90, got {args.arch!r}")
    if any(a not in ARCHS for a in archs):
        ap.error(f"--arch: each of {', '.join(map(str, ARCHS))}, got {args.arch!r}")
    models = _parse_list(args.model, FAMILIES, "model", ap)
    families = {m: next((f for f, p in FAMILIES.items() if p == m), m) for m in models}
    backends = _parse_list(args.backends, None, "backends", ap)

    t0 = time.time()
    # Triton's cache is keyed by the kernel's source (and its jit callees'), the constexprs and
    # specializations, the compile options, the target and the Triton/ptxas versions: a kept cache
    # returns a binary only for exactly what would be compiled again (every check still reads its SASS)
    global _CACHE
    if args.cache:
        _CACHE = os.path.abspath(args.cache)
        os.makedirs(_CACHE, exist_ok=True)
    else:  # a fresh cache, removed at exit (each run's binaries are ~30 MB an arch and family)
        import atexit
        import shutil

        fresh = tempfile.mkdtemp(prefix="kernel_check_")
        atexit.register(shutil.rmtree, fresh, True)
    os.environ["TRITON_CACHE_DIR"] = _CACHE or fresh
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, ROOT)
    import triton

    _use_arch(archs[0])
    recorded = {m: record(m, args.batch, (h, w), args.dtype, args.io, backends) for m in models}
    from srgan_fast.kernels import conv2d_fused as cf
    from srgan_fast.kernels import resblock_fused as rf

    jobs, pruned, refused = [], {}, {}
    n_launches = sum(len(launches) for launches, _, _ in recorded.values())
    for arch in archs:
        refused[arch] = {b: why for b in backends if (why := offered(b, arch))}
        for m in models:
            launches = [rec for rec in recorded[m][0] if rec["backend"] not in refused[arch]]
            js, pr = variants(groups_of(launches), cf, rf, arch, families[m])
            jobs += js
            pruned[(arch, families[m])] = pr
    for j in jobs:
        j["label"] = label(j["g"])[0]
    global _JOBS, _KEEP
    _JOBS, _KEEP = jobs, args.keep
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    todo, of = _unique(jobs)
    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.jobs) as pool:
            done = dict(zip(todo, pool.map(_run, todo, chunksize=1)))
    else:
        done = {i: _run(i) for i in todo}
    results = [done[of[i]] for i in range(len(jobs))]

    failures, rows = [], []
    print(f"# kernel_check: {', '.join(families.values())}; {args.dtype}, batch {args.batch}, {h}x{w} LR, "
          f"{args.io} I/O; {', '.join(ARCHS[a]['sm'] for a in archs)}; triton {triton.__version__}\n")  # fmt: skip
    if triton.__version__ != CARD_TRITON:
        print(f"> triton {triton.__version__} here, {CARD_TRITON} on the card: these are not the card's binaries\n")
    print("## Architectures\n")
    print("| arch | reference card (SMs) | shared a program / an SM | threads an SM | CTAs an SM | MMA | TMA | "
          "backends offered |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for arch in archs:
        a = ARCHS[arch]
        off = ", ".join(b for b in backends if b not in refused[arch]) or "none"
        print(f"| {a['sm']} | {a['card']} ({a['sms']}) | {a['smem_block'] // 1024} KB / {a['smem_sm'] // 1024} KB | "
              f"{a['threads_sm']} | {a['ctas_sm']} | {'wgmma' if arch >= 90 else 'mma.sync'} | "
              f"{'yes' if arch >= 90 else 'no'} | {off} |")  # fmt: skip
    print(f"\nEvery architecture: {REGS_SM} registers an SM and a program, {REGS_THREAD} a thread, "
          f"{THREADS_BLOCK} threads a program, {SMEM_RESERVED} B shared reserved a resident CTA.")  # fmt: skip
    for arch in archs:
        for b, why in refused[arch].items():
            print(f"- {ARCHS[arch]['sm']}: {b} not offered ({why})")
    print(
        "\nregs/thread; local = spilled bytes; smem = shared bytes per program; CTA/SM (limiter); warps/SM; grid = "
        "programs (resblock: SMs x CTA/SM, the persistent grid the launcher sizes from the loaded kernel); hot "
        "loop = the innermost MMA loop: instructions (MMA / cp.async / TMA / plain loads, narrow = 8/16-bit "
        "element loads); ins/MMA; MAC/ins = a warp's multiply-adds per hot-loop instruction; async = wgmma left "
        "in flight across iterations. A loop with a constant trip count that the compiler unrolled whole is "
        "measured from its first operand copy to its last MMA."
    )
    hdr = ["family", "backend", "kernel", "ops", "shape", "config", "regs", "local", "smem", "CTA/SM", "warps/SM",
           "grid", "hot loop", "ins/MMA", "MAC/ins", "async", "verdict"]  # fmt: skip
    summary = {}
    for arch in archs:
        a = ARCHS[arch]
        print(f"\n## {a['sm']}: {a['card']}, {a['sms']} SMs\n")
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        best: dict[tuple[str, str], dict] = {}
        for j, r in zip(jobs, results):
            if j["arch"] != arch:
                continue
            g = j["g"]
            name, shape = label(g)
            kern = g["rec"]["kernel"]
            consts = {k: v for k, v in g["kw"].items() if isinstance(v, (bool, int, str))}
            row = dict(arch=arch, sm=a["sm"], family=j["family"], backend=g["rec"]["backend"], kernel=kern, ops=name,
                       shape=shape, config=j["cfg"], est_shared=j["est_shared"], **r)  # fmt: skip
            row["constexprs"] = consts
            rows.append(row)
            where = f"{a['sm']} {j['family']} {row['backend']} {name} {cfg_str(j['cfg'])}"
            if "error" in r:
                print("| " + " | ".join([j["family"], row["backend"], kern, name, shape, cfg_str(j["cfg"])]
                                        + [""] * 10 + [r["error"]]) + " |")  # fmt: skip
                failures.append(f"{where}: {r['error']}")
                continue
            bad = _verdicts(row, arch)
            per = max((lp["n"] / max(1, lp["mma"]) for lp in r["loops"]), default=float("inf"))
            mac = min((lp["macs"] / max(1, lp["n"]) for lp in r["loops"]), default=0.0)
            row.update(ins_per_mma=per, mac_per_ins=mac)
            grid = ""
            if kern == "resblock":
                grid = f"{a['sms']} x {r['ctas_per_sm']} = {a['sms'] * r['ctas_per_sm']}"
                row["programs"] = a["sms"] * r["ctas_per_sm"]
            for kind in {KIND_GROUP.get(o.kind, o.kind) for o in g["ops"]}:
                if per < best.get((j["family"], kind), {}).get("ins_per_mma", float("inf")):
                    best[(j["family"], kind)] = row
            loops = "; ".join(
                f"{'unrolled ' if lp['unrolled'] else ''}{lp['n']} ({lp['mma']}/{lp['cpasync']}/{lp['tma']}/"
                f"{lp['ldg']}{', narrow ' + str(lp['narrow_ldg']) if lp['narrow_ldg'] else ''})"
                for lp in r["loops"]
            )
            asyn = ("yes" if r["async_mma"] else "no") + (", A:regs" if r["a_regs"] else "") if arch >= 90 else "-"
            verdict = "ok" if not bad else "**" + "; ".join(bad) + "**"
            print("| " + " | ".join([j["family"], row["backend"], kern, name, shape, cfg_str(j["cfg"]), str(r["regs"]),
                                     str(r["local"]), str(r["shared"]), f"{r['ctas_per_sm']} ({r['limiter']})",
                                     str(r["warps_per_sm"]), grid, loops, f"{per:.0f}", f"{mac:.0f}", asyn,
                                     verdict]) + " |")  # fmt: skip
            failures += [f"{where}: {b}" for b in bad]
        summary[arch] = best
        print(f"\n### {a['sm']}: best variant per op kind (instructions per MMA in the hot loop)\n")
        print("| family | op kind | best | regs | local | warps/SM | ins/MMA | MAC/ins | target | verdict |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for (fam, kind), row in sorted(best.items()):
            per, target = row["ins_per_mma"], TARGETS[arch].get(kind)
            ok = target is None or per <= target
            print(f"| {fam} | {kind} | {row['backend']} {cfg_str(row['config'])} | {row['regs']} | {row['local']} | "
                  f"{row['warps_per_sm']} | {per:.0f} | {row['mac_per_ins']:.0f} | {target or '-'} | "
                  f"{'ok' if ok else '**missed**'} |")  # fmt: skip
            if not ok and not args.no_targets:
                failures.append(f"{a['sm']} {fam} {kind}: best {per:.0f} instructions per MMA, target {target}")
        for fam in dict.fromkeys(families.values()):
            if pruned.get((arch, fam)):
                print(f"\n{a['sm']} {fam}: the prune drops {len(pruned[(arch, fam)])} configs: "
                      + "; ".join(pruned[(arch, fam)]))  # fmt: skip
    print("\n## Targets (per architecture: registers, spills, body convs' best instructions per MMA)\n")
    print("| arch | variants | regs (min-max) | spilling | warps/SM (min-max) | body conv ins/MMA (best per family) | "
          "target | verdict |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for arch in archs:
        mine = [r for r in rows if r["arch"] == arch and "error" not in r]
        if not mine:
            continue
        regs = [r["regs"] for r in mine]
        warps = [r["warps_per_sm"] for r in mine]
        body = {fam: row["ins_per_mma"] for (fam, kind), row in summary[arch].items() if kind == "body_conv"}
        target = TARGETS[arch].get("body_conv")
        ok = all(v <= target for v in body.values()) if target else True
        print(f"| {ARCHS[arch]['sm']} | {len(mine)} | {min(regs)}-{max(regs)} | "
              f"{sum(1 for r in mine if r['local'] or r['stl_ldl'])} | {min(warps)}-{max(warps)} | "
              f"{', '.join(f'{f} {v:.0f}' for f, v in body.items())} | {target or '-'} | "
              f"{'ok' if ok else '**missed**'} |")  # fmt: skip
    print(f"\n{len(jobs)} variants ({len(todo)} distinct binaries), {n_launches} launches recorded, "
          f"{time.time() - t0:.0f} s")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    if failures:
        print(f"\nFAILED ({len(failures)}):")
        for f_ in failures:
            print(f"- {f_}")
        return 1
    print("\nkernel_check: every variant passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
