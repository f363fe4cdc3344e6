"""Throughput of the engine against PyTorch eager, torch.compile and ONNX Runtime.

    srgan-fast bench --device cpu --preset 128             # also: python -m benchmarks ...
    srgan-fast bench --device cuda --preset 270p --batch 1 8 --plot bench.png

Every method upscales the same inputs (three rotating sets, so caches do not flatter);
warm-up, compilation and autotuning are excluded; the device is synchronised before each
clock read. By default (--order interleaved) every method is built and makes its first
call, then the methods are timed in rounds, each round running every method once in a
seeded order that rotates from round to round, so load from other jobs on a shared machine
slows all methods alike instead of whichever ran at the time (--order sequential: each
method's repeats back to back, one method in memory at a time).

Each row reports median time and spread (min-max) of its own samples, images/s, output
Mpx/s, TFLOP/s (2 x multiply-adds counted from the plan), speed-up over eager fp32 NCHW
(ratio of medians, and, interleaved, the median and range of the per-round ratios), peak
GPU memory, and PSNR of the method's output against the fp32 eager output, so a fast wrong
result cannot hide. Prints a markdown table; appends JSON rows to OUT/bench_engine.jsonl
(--out; default a new run folder ./bench_results/<UTC time>-<model>/, with table.md).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .engine import Engine
from .models import Generator, output_to_unit
from .options import parse_size as parse_size_bytes
from .plan import compile_plan
from .runners import backend_names, get_backend
from .weights import load_generator

PRESETS = {"128": (128, 128), "270p": (480, 270), "540p": (960, 540), "1080p": (1920, 1080)}


def parse_size(s: str) -> tuple[int, int]:
    if s in PRESETS:
        return PRESETS[s]
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be one of {list(PRESETS)} or WxH, got {s!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8 LR pixels, got {s!r}")
    return w, h


# Timing and environment helpers, shared by the benchmark scripts (training/bench.py,
# benchmarks/profile_ops.py): one copy, and one set of JSON keys in every results file.


def sync(device: torch.device) -> None:
    """Wait for `device` (a no-op on the CPU) so that a clock read sees finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now() -> float:
    """The benchmark's clock (time.perf_counter; a test replaces it with a simulated one)."""
    return time.perf_counter()


def time_fn(fn, inputs, device, warmup: int, repeats: int, clock=None) -> list[float]:
    """Seconds of each of `repeats` calls fn(inputs[i % len]), after `warmup` untimed ones;
    the device is synchronised before each clock read (one method on its own: `srgan-fast
    bench --order sequential`; time_interleaved times several methods round by round)."""
    clock = clock or now
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    sync(device)
    times = []
    for i in range(repeats):
        x = inputs[i % len(inputs)]
        sync(device)
        t0 = clock()
        fn(x)
        sync(device)
        times.append(clock() - t0)
    return times


def cuda_time(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of fn() on the current CUDA stream, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float().cpu() - b.float().cpu()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def utc_date() -> str:
    """Now, UTC, ISO 8601 to the second: the "date" of a results row."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_sha() -> str | None:
    """Short commit of the checkout this code runs from ("" outside a git checkout; None
    without git): the "git_sha" of a results row."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        return None


def env_info(device: torch.device) -> dict:
    """What a results row records about the machine and the software (JSON keys shared by
    every benchmark: date, git_sha, torch, device, ...)."""
    info = {
        "date": utc_date(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    sha = git_sha()
    if sha is not None:
        info["git_sha"] = sha
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            pass
    else:
        info["device"] = f"CPU ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)"
    return info


def peak_matmul_tflops(device: torch.device, n: int = 8192, dtype=torch.bfloat16, repeats: int = 20) -> float:
    """The card's practical tensor-core peak, measured now: a large bf16 matmul (TFLOP/s)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def methods_for(
    device: torch.device,
    dtypes: list[str],
    model: Generator,
    which: list[str] | None,
    max_autotune: bool = False,
    memory_budget: int | None = None,
):
    """(name, dtype, build) where build() returns fn(x_nchw_float01) -> output (any layout)."""
    out = []

    def eager(dtype, cl):
        def build():
            m = load_like(model).to(device, dtype)
            if cl:
                m = m.to(memory_format=torch.channels_last)

            @torch.inference_mode()
            def fn(x):
                x = x.to(dtype)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                return output_to_unit(m, m(x).float())

            return fn

        return build

    def compiled(dtype, mode):
        def build():
            m = load_like(model).to(device, dtype).to(memory_format=torch.channels_last)
            cm = torch.compile(m, mode=mode)

            @torch.inference_mode()
            def fn(x):
                return output_to_unit(m, cm(x.to(dtype).contiguous(memory_format=torch.channels_last)).float())

            return fn

        return build

    def ort(provider):
        def build():
            from .export import export_onnx, onnx_session

            # the same export as `srgan-fast export` (output already mapped to [0, 1])
            f = export_onnx(model, Path(tempfile.mkdtemp()) / "g.onnx")
            sess = onnx_session(f, threads=torch.get_num_threads(), provider=provider)
            name = sess.get_inputs()[0].name

            def fn(x):
                return torch.from_numpy(sess.run(None, {name: x.cpu().numpy()})[0])

            return fn

        return build

    def engine(backend, dtype, graph=False):
        def build():
            e = Engine(
                compile_plan(model), device=device, dtype=dtype, backend=backend, cuda_graph=graph,
                memory_budget=memory_budget,
            )  # fmt: skip

            def fn(x):  # the engine's own layout: NHWC in, NHWC out
                return e.upscale(x)

            fn.nhwc = True
            fn.engine = e  # "auto" chooses at its first call: _prepare reads e.backend after it
            return fn

        return build

    def engine_rows(dtype):
        """One row per registered backend that benches on this device (runners.Backend)."""
        rows = []
        for name in backend_names():
            b = get_backend(name)
            if device.type in b.bench_devices:
                rows.append((f"engine {name}", dtype, engine(name, dtype)))
                if device.type == "cuda" and b.cuda_graph:
                    rows.append((f"engine {name} + CUDA graph", dtype, engine(name, dtype, graph=True)))
        return rows

    f32 = torch.float32
    lo = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": f32}
    out.append(("eager NCHW", "fp32", eager(f32, False)))
    out.append(("eager channels_last", "fp32", eager(f32, True)))
    if device.type == "cpu":
        out.append(("torch.compile", "fp32", compiled(f32, None)))
        out.append(("ONNX Runtime (CPU EP)", "fp32", ort("CPUExecutionProvider")))
        out += engine_rows("fp32")
        # what a user gets by default: the backend the CPU calibration picks (srgan_fast/calibrate.py)
        out.append(("engine auto", "fp32", engine("auto", "fp32")))
    else:
        for d in dtypes:
            if d == "fp32":
                continue
            out.append(("eager channels_last", d, eager(lo[d], True)))
            out.append(("torch.compile", d, compiled(lo[d], None)))
            out.append(("torch.compile reduce-overhead", d, compiled(lo[d], "reduce-overhead")))
            if max_autotune:
                out.append(("torch.compile max-autotune", d, compiled(lo[d], "max-autotune-no-cudagraphs")))
            out += engine_rows(d)
    if which:
        out = [m for m in out if any(w.lower() in m[0].lower() for w in which)]
    return out


def load_like(model: Generator) -> Generator:
    """A fresh copy of the model (any family), in eval mode."""
    return copy.deepcopy(model).eval()


BASELINE = ("eager NCHW", "fp32")  # the row every "vs eager fp32" ratio divides by


def round_orders(n: int, rounds: int, seed: int | None = 0) -> list[list[int]]:
    """The order in which n methods run in each of `rounds` rounds (indices 0..n-1).

    Rounds come in cycles: the rows of a Williams design (n rows for even n, 2n for odd n,
    each the first rotated by one more step), so over a cycle every method runs equally
    often in every position, and just after every other method equally often (whose
    leftovers in caches and thread pools it meets), the standard balance of a crossover
    trial. Each cycle relabels the methods by a permutation drawn from `seed` (the same
    orders on every run with one seed; seed None: none, round r is the design's row r)."""
    if n == 0:
        return [[] for _ in range(rounds)]
    first, lo, hi = [0], 1, n - 1  # 0, 1, n-1, 2, n-2, ...: consecutive steps all differ mod n
    while lo <= hi:
        first.append(lo)
        lo += 1
        if lo <= hi:
            first.append(hi)
            hi -= 1
    rows = [[(v + r) % n for v in first] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    rng = random.Random(seed)
    orders: list[list[int]] = []
    label = list(range(n))
    for r in range(rounds):
        if r % len(rows) == 0 and seed is not None:
            label = list(range(n))
            rng.shuffle(label)
        orders.append([label[v] for v in rows[r % len(rows)]])
    return orders


def time_interleaved(
    calls, rounds: int, warmup: int = 0, seed: int | None = 0, device: torch.device | None = None, clock=None
) -> tuple[list[list[float]], dict[int, BaseException]]:
    """Time methods in rounds: `warmup` untimed rounds, then `rounds` timed ones; every round
    runs each method once, calls[i](r) for round r (0-based, warm-up rounds included), in
    the order round_orders(len(calls), warmup + rounds, seed) gives.

    Returns (times, errors): times[i][k] is method i's seconds in timed round k, so
    times[i][k] and times[j][k] ran moments apart, under the same load. The device is
    synchronised before each clock read. A method that raises is dropped from the rounds
    that follow (its error in errors[i]; its list stops there)."""
    device = device or torch.device("cpu")
    clock = clock or now
    times: list[list[float]] = [[] for _ in calls]
    errors: dict[int, BaseException] = {}
    for r, order in enumerate(round_orders(len(calls), warmup + rounds, seed)):
        for i in order:
            if i in errors:
                continue
            try:
                sync(device)
                t0 = clock()
                calls[i](r)
                sync(device)
                t = clock() - t0
            except Exception as e:  # reported by the caller, the other methods go on
                errors[i] = e
                continue
            if r >= warmup:
                times[i].append(t)
    return times, errors


def per_round_speedups(base_times: list[float], times: list[float]) -> list[float]:
    """base/method for each round both have (speed-up over the baseline, round by round)."""
    return [b / t for b, t in zip(base_times, times)]


def timing_stats(times: list[float], base_times: list[float] | None, paired: bool) -> dict:
    """A row's timing keys from its own samples: median, min, max; speed-up over the
    baseline's median (speedup_vs_eager_fp32, as before interleaving); with paired=True
    (the samples came from the same rounds as base_times) also the median, min and max of
    the per-round speed-ups, which load that moves between rounds does not bias."""
    med = statistics.median(times)
    out = {
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "speedup_vs_eager_fp32": statistics.median(base_times) / med if base_times else None,
        "speedup_vs_eager_fp32_paired": None,
        "speedup_vs_eager_fp32_paired_min": None,
        "speedup_vs_eager_fp32_paired_max": None,
    }
    if paired and base_times:
        s = per_round_speedups(base_times, times)
        if s:
            out["speedup_vs_eager_fp32_paired"] = statistics.median(s)
            out["speedup_vs_eager_fp32_paired_min"] = min(s)
            out["speedup_vs_eager_fp32_paired_max"] = max(s)
    return out


def host_peak_rss_mib() -> float | None:
    """This process's peak resident memory so far (MiB), where the OS reports it."""
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return kib / 2**20 if sys.platform == "darwin" else kib / 2**10  # bytes on macOS, KiB on Linux


def default_run_dir(model: str, root: str | os.PathLike = "bench_results") -> Path:
    """A fresh folder for one run, ROOT/<UTC time>-<model> (ROOT relative to the current
    directory): results go beside the caller, never into a checkout's tracked files."""
    stem = Path(model).stem if model.endswith(".safetensors") else model
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "model"
    name = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{stem}"
    d = Path(root) / name
    k = 2
    while d.exists():
        d = Path(root) / f"{name}-{k}"
        k += 1
    return d


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--preset", default="128", type=parse_size, help=f"LR size: {', '.join(PRESETS)} or WxH")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--dtype", nargs="+", default=["fp16"], help="low-precision dtypes on GPU (fp16 bf16)")
    p.add_argument(
        "--model",
        default="srresnet_x4",
        help="bundled name or .safetensors of any family (srresnet, compact, msrresnet, rrdbnet)",
    )
    p.add_argument("--methods", nargs="*", default=None, help="substrings of method names to run (default all)")
    p.add_argument(
        "--max-autotune", action="store_true", help="also torch.compile mode=max-autotune (GPU; minutes to compile)"
    )
    p.add_argument(
        "--repeats", type=int, default=None,
        help="timed runs per method, = timed rounds with --order interleaved (default 10 GPU, 5 CPU)",
    )  # fmt: skip
    p.add_argument(
        "--warmup", type=int, default=2,
        help="untimed runs per method after its first call (default 2; interleaved: untimed rounds)",
    )  # fmt: skip
    p.add_argument(
        "--order", choices=("interleaved", "sequential"), default="interleaved",
        help="interleaved (default): build every method and make its first call (compile, autotune),\n"
        "  then time REPEATS rounds that each run every method once, in a seeded order rotated\n"
        "  per round (a Williams design: each method equally often in each place and right after\n"
        "  each other method); load that changes during the run then slows all methods alike; each\n"
        "  row also reports the per-round speed-up over eager fp32 (median, min-max). Keeps\n"
        "  every method alive for the whole run (all weights, compiled code, sessions, graphs).\n"
        "sequential: time each method's repeats back to back, freeing it before the next is\n"
        "  built (one method in memory at a time; ratios move with the machine's load)",
    )  # fmt: skip
    p.add_argument("--order-seed", type=int, default=0, help="seed of the interleaved order (default 0)")
    p.add_argument(
        "--out", default=None,
        help="folder whose bench_engine.jsonl the rows are appended to (default: a new run\n"
        "  folder ./bench_results/<UTC time>-<model>/, with the table in table.md)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also write a bar chart of output Mpx/s by method")
    p.add_argument(
        "--memory-budget", dest="memory_budget", type=parse_size_bytes, default=None, metavar="BYTES",
        help="engine rows: activation memory per call (e.g. 1G), so large frames go through the tiler",
    )  # fmt: skip
    p.add_argument(
        "--no-peak", dest="peak", action="store_false",
        help="GPU: skip measuring the bf16 matmul peak (each row reports its share of it)",
    )  # fmt: skip
    return p


def _prepare(label: str, build, inputs, inputs_nhwc, ref, device, held: int = 0) -> dict:
    """Build one method and make its first call (compile, autotune; excluded from timing).
    `held`: GPU bytes that methods built earlier and still alive hold, left out of its peak."""
    t_build = now()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    fn = build()
    nhwc = getattr(fn, "nhwc", False)
    ins = inputs_nhwc if nhwc else inputs
    y = fn(ins[0])  # first call: compile / autotune, and the parity output
    sync(device)
    t_first = now() - t_build
    eng = getattr(fn, "engine", None)
    if eng is not None and getattr(eng, "backend_choice", None) is not None:  # "auto": what it chose and how
        print(f"  {label}: {eng.backend_choice.describe()}", file=sys.stderr)
    y = y.permute(0, 3, 1, 2) if nhwc else y
    quality = psnr01(y, ref)
    del y
    peak = (torch.cuda.max_memory_allocated(device) - held) / 2**20 if device.type == "cuda" else None
    print(f"  {label:40s} built, first call {t_first:.2f} s", file=sys.stderr)
    return {
        "fn": fn, "ins": ins, "first_call_s": t_first, "psnr_vs_fp32_db": quality, "peak_mem_mib": peak,
        "engine_backend": None if eng is None else eng.backend,
    }  # fmt: skip


def _skipped(label: str, e: BaseException) -> None:
    msg = str(e).splitlines()[0][:120] if str(e) else ""
    print(f"  {label}: skipped ({type(e).__name__}: {msg})", file=sys.stderr)


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench: --device cuda but no GPU here", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    repeats = args.repeats or (10 if device.type == "cuda" else 5)
    if repeats < 1 or args.warmup < 0:
        print("bench: --repeats must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 2
    interleaved = args.order == "interleaved"
    model = load_generator(args.model)
    plan = compile_plan(model)
    macs = plan.model_macs  # the network's own multiply-adds, same for every method
    w, h = args.preset
    info = env_info(device)
    if hasattr(os, "getloadavg"):
        info["loadavg_1m_start"] = os.getloadavg()[0]
    if device.type == "cuda" and args.peak:
        info["peak_bf16_matmul_tflops"] = peak_matmul_tflops(device)
        print(f"  peak: bf16 matmul 8192^3 {info['peak_bf16_matmul_tflops']:.0f} TFLOP/s", file=sys.stderr)
    if args.memory_budget:
        info["engine_memory_budget"] = args.memory_budget
    rows = []
    for n in args.batch:
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.rand(n, 3, h, w, generator=gen).to(device) for _ in range(3)]
        inputs_nhwc = [x.permute(0, 2, 3, 1).contiguous() for x in inputs]
        with torch.inference_mode():
            m32 = load_like(model).to(device)
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                ref = output_to_unit(m32, m32(inputs[0]))  # fp32 reference (no TF32)
            del m32
        methods = methods_for(device, args.dtype, model, args.methods, args.max_autotune, args.memory_budget)
        done = []  # (name, dtype, prepared dict without fn, times)
        if interleaved:
            # every method built and warm before the first timed round, and kept alive to the last
            held0 = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            live = []
            for name, dtype, build in methods:
                try:
                    held = torch.cuda.memory_allocated(device) - held0 if device.type == "cuda" else 0
                    p = _prepare(f"{name} {dtype}", build, inputs, inputs_nhwc, ref, device, held)
                    live.append((name, dtype, p))
                except Exception as e:  # a baseline that does not run here is reported, not fatal
                    _skipped(f"{name} {dtype}", e)
            calls = [lambda r, p=p: p["fn"](p["ins"][r % len(p["ins"])]) for _, _, p in live]
            print(f"  timing {args.warmup} + {repeats} rounds of {len(live)} methods", file=sys.stderr)
            times, errors = time_interleaved(calls, repeats, args.warmup, args.order_seed, device)
            for i, (name, dtype, p) in enumerate(live):
                if i in errors:
                    _skipped(f"{name} {dtype}", errors[i])
                    continue
                p.pop("fn")
                done.append((name, dtype, p, times[i]))
            del live, calls
        else:
            for name, dtype, build in methods:
                try:
                    p = _prepare(f"{name} {dtype}", build, inputs, inputs_nhwc, ref, device)
                    times = time_fn(p["fn"], p["ins"], device, args.warmup, repeats)
                except Exception as e:  # a baseline that does not run here is reported, not fatal
                    _skipped(f"{name} {dtype}", e)
                    continue
                if device.type == "cuda":
                    p["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
                p.pop("fn")
                done.append((name, dtype, p, times))
                del p
        base_times = next((t for name, dtype, _, t in done if (name, dtype) == BASELINE), None)
        rss = host_peak_rss_mib()
        for name, dtype, p, times in done:
            st = timing_stats(times, base_times, paired=interleaved)
            med = st["median_s"]
            tflops = 2 * macs * n * w * h / med / 1e12
            row = {
                **info,
                "method": name,
                "dtype": dtype,
                "model": args.model,
                "lr_size": f"{w}x{h}",
                "batch": n,
                "median_s": med,
                "min_s": st["min_s"],
                "max_s": st["max_s"],
                "repeats": repeats,
                "first_call_s": p["first_call_s"],
                "images_per_s": n / med,
                "out_mpx_per_s": n * w * h * plan.scale**2 / med / 1e6,
                "tflops": tflops,
                "share_of_peak": tflops / info["peak_bf16_matmul_tflops"]
                if info.get("peak_bf16_matmul_tflops")
                else None,
                "speedup_vs_eager_fp32": st["speedup_vs_eager_fp32"],
                "psnr_vs_fp32_db": p["psnr_vs_fp32_db"],
                "peak_mem_mib": p["peak_mem_mib"],
                # added with interleaving (issue 20)
                "order": args.order,
                "order_seed": args.order_seed if interleaved else None,
                "warmup": args.warmup,
                "times_s": times,
                "speedup_vs_eager_fp32_paired": st["speedup_vs_eager_fp32_paired"],
                "speedup_vs_eager_fp32_paired_min": st["speedup_vs_eager_fp32_paired_min"],
                "speedup_vs_eager_fp32_paired_max": st["speedup_vs_eager_fp32_paired_max"],
                "host_peak_rss_mib": rss,
                "engine_backend": p["engine_backend"],  # the backend an engine row ran (auto: its choice)
            }
            rows.append(row)
            paired = st["speedup_vs_eager_fp32_paired"]
            print(
                f"  {name + ' ' + dtype:40s} b{n} {med * 1000:9.2f} ms  x{row['speedup_vs_eager_fp32'] or 0:.2f}"
                + (f"  per round x{paired:.2f}" if paired else ""),
                file=sys.stderr,
            )
        del done
    if hasattr(os, "getloadavg"):
        for r in rows:
            r["loadavg_1m_end"] = os.getloadavg()[0]
    table = format_table(rows, info)
    run_dir = args.out is None
    out = default_run_dir(args.model) if run_dir else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench_engine.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    if run_dir:
        cmd = f"{prog or 'srgan-fast bench'} {shlex.join(sys.argv[1:] if argv is None else argv)}"
        (out / "table.md").write_text(f"`{cmd}`\n\n{table}\n")
    print(f"wrote {out / 'bench_engine.jsonl'}", file=sys.stderr)
    print(table)
    if args.plot:
        plot(rows, info, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def plot(rows: list[dict], info: dict, path: str) -> None:
    """Horizontal bars of output Mpx/s per method and batch (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .errors import MissingDependency

        raise MissingDependency("--plot needs matplotlib: pip install 'srgan-fast[bench]'") from None
    labels = [f"{r['method']} {r['dtype']} b{r['batch']}" for r in rows]
    vals = [r["out_mpx_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    bars = ax.barh(range(len(rows)), vals, color=["C1" if "engine" in r["method"] else "C0" for r in rows])
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.bar_label(bars, fmt="%.3g", padding=2)
    ax.set_xlabel("output Mpx/s (higher is better)")
    ax.set_title(f"{info['device']}, LR {rows[0]['lr_size']}" if rows else info["device"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(rows: list[dict], info: dict) -> str:
    peak = info.get("peak_bf16_matmul_tflops")
    order = rows[0].get("order") if rows else None
    rss = max((r["host_peak_rss_mib"] for r in rows if r.get("host_peak_rss_mib")), default=None)
    lines = [
        f"device: {info['device']}; torch {info['torch']}, triton {info.get('triton', '-')}, "
        f"onnxruntime {info.get('onnxruntime', '-')}; git {info.get('git_sha', '-')}; {info['date']}"
        + (f"; peak bf16 matmul {peak:.0f} TFLOP/s (TFLOP/s column: share of it in brackets)" if peak else "")
        + (f"; order {order}" if order else "")
        + (f" (seed {rows[0]['order_seed']})" if order == "interleaved" else "")
        + (f"; load {info['loadavg_1m_start']:.1f}" if info.get("loadavg_1m_start") is not None else "")
        + (f"-{rows[0]['loadavg_1m_end']:.1f}" if rows and rows[0].get("loadavg_1m_end") is not None else "")
        + (f"; host peak RSS {rss:.0f} MiB" if rss else ""),
        "",
        "| method | dtype | LR size | batch | median ms (min-max) | img/s | out Mpx/s | TFLOP/s | vs eager fp32 "
        "| PSNR vs fp32 (dB) | peak MiB | vs eager fp32 per round (min-max) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        sp = f"{r['speedup_vs_eager_fp32']:.2f}x" if r["speedup_vs_eager_fp32"] else "-"
        mem = f"{r['peak_mem_mib']:.0f}" if r["peak_mem_mib"] is not None else "-"
        q = "inf" if math.isinf(r["psnr_vs_fp32_db"]) else f"{r['psnr_vs_fp32_db']:.1f}"
        share = f" ({r['share_of_peak']:.0%})" if r.get("share_of_peak") else ""
        pr = r.get("speedup_vs_eager_fp32_paired")
        pr = (
            f"{pr:.2f}x ({r['speedup_vs_eager_fp32_paired_min']:.2f}-{r['speedup_vs_eager_fp32_paired_max']:.2f})"
            if pr
            else "-"
        )
        method = r["method"]
        if method.endswith(" auto") and r.get("engine_backend"):
            method += f" (-> {r['engine_backend']})"
        lines.append(
            f"| {method} | {r['dtype']} | {r['lr_size']} | {r['batch']} | {r['median_s'] * 1000:.2f} "
            f"({r['min_s'] * 1000:.2f}-{r['max_s'] * 1000:.2f}) | {r['images_per_s']:.2f} | {r['out_mpx_per_s']:.2f} "
            f"| {r['tflops']:.2f}{share} | {sp} | {q} | {mem} | {pr} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(prog="python -m srgan_fast.bench"))
