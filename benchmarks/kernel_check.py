"""kernel_check: what the engine's Triton kernels compile to on an H100/H200 (sm_90a), without a GPU.

Every launch the Triton backends (triton, triton_tma, triton_fused) make for a real batch (the
srresnet_x4 plan, batch 8 of 270x480 fp16 by default) is recorded on meta tensors, and compiled
with every autotune config the launcher's autotuner would try, for sm_90a, by this machine's
Triton and its bundled ptxas (pin triton==3.6.0: the card's; other versions move registers by
up to 56 per thread). For each variant it prints registers, local memory (spills), shared
memory, CTAs per SM and the limiter, the grid, and the innermost MMA loop of the SASS:
instructions per iteration, MMAs (HGMMA = wgmma), operand copies (LDGSTS = cp.async, UTMALDG =
TMA), plain global loads and their width, and whether wgmma is left in flight across iterations.

It fails (exit 1) on:
  - a variant that spills (local memory, STL/LDL),
  - a conv without wgmma, or whose hot loop has no cp.async / TMA operand copies,
  - a conv hot loop with plain global loads (operands gathered into registers instead of copied
    by cp.async/TMA), or element-wise 8/16-bit loads in any hot loop (scalar gathers),
  - a target missed: the best variant of an op kind above its instructions-per-MMA bound
    (TARGETS; the issue's numbers).
It also reports, without failing, wgmma whose A operand comes from registers (A:regs) and the
persistent grid resblock_fused's launcher sizes from a kernel's registers and shared memory.

    .venv/bin/python benchmarks/kernel_check.py                # the table, exit 1 on a failure
    .venv/bin/python benchmarks/kernel_check.py --io u8 --json out.json
    .venv/bin/python benchmarks/kernel_check.py --backends triton_tma --keep sass/
    .venv/bin/python benchmarks/kernel_check.py --cache ~/.cache/srgan_fast/kernel_check   # reuse binaries

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
SMS = 132  # H100 SXM; the H200 has the same 132 SMs
# best variant of each op kind: at most this many hot-loop instructions per MMA instruction
TARGETS = {"block_conv": 25, "head": 150}
KIND_GROUP = {"block_conv1": "block_conv", "block_conv2": "block_conv", "trunk_end": "block_conv"}


# ----------------------------------------------------------------------------------------------
# a driver that reports an sm_90 GPU and launches nothing


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
            return 0

        def get_current_stream(self, device=None):
            return 0

    triton.runtime.driver.set_active(Offline())


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
# variants: one per (distinct binary, autotune config)

# what each kernel's autotune configs set (the rest of a launch's keywords come from the launcher)
_CONFIG_KEYS = {
    "pointer": ("BLOCK_M", "BLOCK_K", "num_warps", "num_stages"),
    "tma": ("TILE_H", "TILE_W", "num_warps", "num_stages"),
    "resblock": ("TILE_H", "TILE_W", "BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages"),
}


def variants(launches, cf, rf):
    """Group launches by compiled binary and expand each into the configs its autotuner tries."""
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
        g = groups.setdefault(key, dict(rec=rec, args=args, kw=kw, ops=[]))
        g["ops"].append(rec["op"])
    jobs = []
    for key, g in groups.items():
        kern = g["rec"]["kernel"]
        if kern == "pointer":
            fn, cfgs = cf._conv2d_fused_kernel, cf._prune_pointer(cf._GPU_CONFIGS, {}, BLOCK_N=g["kw"]["BLOCK_N"])
        elif kern == "tma":
            fn, cfgs = cf._conv2d_fused_tma_kernel, cf._prune_tma(cf._TMA_CONFIGS, {}, BLOCK_N=g["kw"]["BLOCK_N"])
        else:
            fn, cfgs = rf._resblock_fused_kernel, rf._GPU_CONFIGS
        for c in cfgs:
            cfg = dict(c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages)
            # the same binary whichever backend launched it: compiled and read once (_unique)
            binary = (key[1:], tuple(sorted((k, repr(v)) for k, v in cfg.items())))
            jobs.append(dict(g=g, fn=fn, cfg=cfg, binary=binary))
    return jobs


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


def analyse(job, keep=None):
    import triton

    from srgan_fast.kernels import resblock_fused as rf

    g, cfg = job["g"], dict(job["cfg"])
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
    ins = [(int(a, 16), op, suf) for a, _pred, op, suf, _ in found]
    # innermost loops that hold MMAs: conditional backward branches (an unconditional one is the
    # return from an out-of-line slow path, e.g. an mbarrier wait retried at the kernel's end)
    loops = []
    for a, pred, op, _suf, rest in found:
        t = re.search(r"0x([0-9a-f]+)", rest)
        if op == "BRA" and pred and t and int(t.group(1), 16) <= int(a, 16):
            loops.append((int(t.group(1), 16), int(a, 16)))
    hot = [lp for lp in set(loops) if any(lp[0] <= a <= lp[1] and op in ("HGMMA", "HMMA") for a, op, _ in ins)]
    hot = sorted(lp for lp in hot if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in hot))
    total = Counter(op for _, op, _ in ins)
    unrolled = not hot and total["HGMMA"] + total["HMMA"] > 0
    if unrolled:  # a constant trip count unrolled whole: the span from the first copy to the last MMA
        lo = min(a for a, op, _ in ins if op in ("LDGSTS", "UTMALDG", "HGMMA", "HMMA"))
        hot = [(lo, max(a for a, op, _ in ins if op in ("HGMMA", "HMMA")))]
    loop_rows = []
    for lo, hi in hot:
        body = [(op, suf) for a, op, suf in ins if lo <= a <= hi]
        mix = Counter(op for op, _ in body)
        # element-wise gathers of 16-bit operands (fp32 bias/slope loads of an epilogue that the
        # unrolled loop body holds are 32-bit and not counted)
        narrow = sum(1 for op, suf in body if op == "LDG" and re.search(r"\.(U16|S16|U8|S8)\b", suf))
        loop_rows.append(dict(n=len(body), mma=mix["HGMMA"] + mix["HMMA"], cpasync=mix["LDGSTS"],
                              tma=mix["UTMALDG"], ldg=mix["LDG"], narrow_ldg=narrow,
                              local=mix["STL"] + mix["LDL"], unrolled=unrolled))  # fmt: skip
    pend = [int(p) for p in re.findall(r"warp_group_dot_wait.*?pendings = (\d+)", ck.asm.get("ttgir", ""))]
    # wgmma reads A from shared memory (a descriptor) or from registers (loaded there first)
    a_regs = any(op == "HGMMA" and not rest.split(",")[1].strip().startswith("gdesc")
                 for _a, _p, op, _s, rest in found)  # fmt: skip
    shared = ck.metadata.shared
    warps = cfg["num_warps"]
    ctas = rf.ctas_per_sm(regs, shared, warps)
    limits = {
        "regs": 65536 // (-(-max(regs, 1) * 32 // 256) * 256 * warps),
        "smem": (228 * 1024) // (shared + 1024),
        "warps": 64 // warps,
    }
    limiter = "/".join(k for k, v in limits.items() if v == ctas) or "ctas"
    if keep:
        tag = re.sub(r"[^A-Za-z0-9]+", "_", f"{job['g']['rec']['backend']}_{job['label']}_{cfg_str(cfg)}")
        with open(os.path.join(keep, tag + ".sass"), "w") as f:
            f.write(sass)
        with open(os.path.join(keep, tag + ".ttgir"), "w") as f:
            f.write(ck.asm.get("ttgir", ""))
    return dict(regs=regs, local=local + stack, shared=shared, ctas_per_sm=ctas, limiter=limiter,
                hgmma=total["HGMMA"], hmma=total["HMMA"], cpasync=total["LDGSTS"], tma=total["UTMALDG"],
                stl_ldl=total["STL"] + total["LDL"], loops=loop_rows, async_mma=max(pend or [0]) > 0, a_regs=a_regs,
                triton=triton.__version__)  # fmt: skip


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--model", default="srresnet_x4", help="generator preset, compact preset, rrdbnet_x4plus or "
                    "msrresnet_x4 (random weights; default srresnet_x4)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=8, help="frames per batch (default 8)")
    ap.add_argument("--size", default="270x480", help="LR frame HxW (default 270x480)")
    ap.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="storage dtype (default fp16)")
    ap.add_argument("--io", choices=("float", "u8"), default="float", help="float frames (the bench) or uint8 (video)")
    ap.add_argument("--backends", default="triton,triton_tma,triton_fused",
                    help="comma-separated Triton backends to record (default all three)")  # fmt: skip
    ap.add_argument("--arch", type=int, default=90, help="compute capability x10 (default 90: H100/H200)")
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

    t0 = time.time()
    # Triton's cache is keyed by the kernel's source (and its jit callees'), the constexprs and
    # specializations, the compile options and the Triton/ptxas versions: a kept cache returns a
    # binary only for exactly what would be compiled again (and every check still reads its SASS)
    global _CACHE
    if args.cache:
        _CACHE = os.path.abspath(args.cache)
        os.makedirs(_CACHE, exist_ok=True)
    else:  # a fresh cache, removed at exit (each run's binaries are ~30 MB)
        import atexit
        import shutil

        fresh = tempfile.mkdtemp(prefix="kernel_check_")
        atexit.register(shutil.rmtree, fresh, True)
    os.environ["TRITON_CACHE_DIR"] = _CACHE or fresh
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, ROOT)
    import triton

    _offline_driver(args.arch)
    launches, cf, rf = record(args.model, args.batch, (h, w), args.dtype, args.io, args.backends.split(","))
    jobs = variants(launches, cf, rf)
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

    failures = []
    rows = []
    print(f"# kernel_check: {args.model}, {args.dtype}, batch {args.batch}, {h}x{w} LR, {args.io} I/O, "
          f"sm_{args.arch}a, triton {triton.__version__}\n")  # fmt: skip
    if triton.__version__ != CARD_TRITON:
        print(f"> triton {triton.__version__} here, {CARD_TRITON} on the card: these are not the card's binaries\n")
    print(
        "regs/thread; local = spilled bytes; smem = shared bytes per program; CTA/SM (limiter); grid = programs "
        "(resblock: SMs x CTA/SM, the persistent grid the launcher sizes from the loaded kernel); hot loop = the "
        "innermost MMA loop: instructions (MMA / cp.async / TMA / plain loads, narrow = 8/16-bit element "
        "loads); ins/MMA; async = wgmma left in flight across iterations. A loop with a constant trip count "
        "that the compiler unrolled whole is measured from its first operand copy to its last MMA.\n"
    )
    hdr = ["backend", "kernel", "ops", "shape", "config", "regs", "local", "smem", "CTA/SM", "grid", "hot loop",
           "ins/MMA", "async", "verdict"]  # fmt: skip
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    best: dict[str, tuple[float, str]] = {}
    for j, r in zip(jobs, results):
        g = j["g"]
        name, shape = label(g)
        kern = g["rec"]["kernel"]
        consts = {k: v for k, v in g["kw"].items() if isinstance(v, (bool, int, str))}
        row = dict(backend=g["rec"]["backend"], kernel=kern, ops=name, shape=shape, config=j["cfg"], **r)
        row["constexprs"] = consts
        rows.append(row)
        bad = []
        if "error" in r:
            bad.append(r["error"])
            print(
                "| "
                + " | ".join([row["backend"], kern, name, shape, cfg_str(j["cfg"])] + [""] * 8 + [r["error"]])
                + " |"
            )
            failures.append(f"{row['backend']} {name} {cfg_str(j['cfg'])}: {r['error']}")
            continue
        if r["local"] or r["stl_ldl"]:
            bad.append(f"spills {r['local']} B")
        if r["hgmma"] == 0:
            bad.append("no wgmma")
        if not r["loops"]:
            bad.append("no MMA loop found")
        for lp in r["loops"]:
            if lp["cpasync"] + lp["tma"] == 0:
                bad.append("hot loop without cp.async/TMA")
            if lp["narrow_ldg"]:
                bad.append(f"{lp['narrow_ldg']} narrow loads in the hot loop")
            elif kern != "resblock" and lp["ldg"]:  # (resblock's unrolled loop body holds its epilogue)
                bad.append(f"{lp['ldg']} plain loads in the hot loop")
        per = max((lp["n"] / max(1, lp["mma"]) for lp in r["loops"]), default=float("inf"))
        row["ins_per_mma"] = per
        grid = ""
        if kern == "resblock":
            grid = f"{SMS} x {r['ctas_per_sm']} = {SMS * r['ctas_per_sm']}"
            row["programs"] = SMS * r["ctas_per_sm"]
        kinds = {KIND_GROUP.get(o.kind, o.kind) for o in g["ops"]}
        for kind in kinds:
            if per < best.get(kind, (float("inf"), ""))[0]:
                best[kind] = (per, f"{row['backend']} {cfg_str(j['cfg'])}")
        loops = "; ".join(
            f"{'unrolled ' if lp['unrolled'] else ''}{lp['n']} ({lp['mma']}/{lp['cpasync']}/{lp['tma']}/{lp['ldg']}"
            f"{', narrow ' + str(lp['narrow_ldg']) if lp['narrow_ldg'] else ''})"
            for lp in r["loops"]
        )
        verdict = "ok" if not bad else "**" + "; ".join(bad) + "**"
        print("| " + " | ".join([row["backend"], kern, name, shape, cfg_str(j["cfg"]), str(r["regs"]), str(r["local"]),
                                 str(r["shared"]), f"{r['ctas_per_sm']} ({r['limiter']})", grid, loops,
                                 f"{per:.0f}", ("yes" if r["async_mma"] else "no")
                                 + (", A:regs" if r["a_regs"] else ""), verdict]) + " |")  # fmt: skip
        failures += [f"{row['backend']} {name} {cfg_str(j['cfg'])}: {b}" for b in bad]
    print("\n## Targets (best variant per op kind, instructions per MMA in the hot loop)\n")
    print("| op kind | best | where | target | verdict |")
    print("|---|---|---|---|---|")
    for kind, (per, where) in sorted(best.items()):
        target = TARGETS.get(kind)
        ok = target is None or per <= target
        print(f"| {kind} | {per:.0f} | {where} | {target or '-'} | {'ok' if ok else '**missed**'} |")
        if not ok and not args.no_targets:
            failures.append(f"{kind}: best {per:.0f} instructions per MMA, target {target}")
    print(f"\n{len(jobs)} variants ({len(todo)} distinct binaries), {len(launches)} launches recorded, "
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
