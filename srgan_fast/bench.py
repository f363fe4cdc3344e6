"""Throughput of the engine against PyTorch eager, torch.compile and ONNX Runtime.

    srgan-fast bench --device cpu --preset 128             # also: python -m benchmarks ...
    srgan-fast bench --device cuda --preset 270p --batch 1 8 --plot bench.png

Every method upscales the same inputs (three rotating sets, so caches do not flatter);
warm-up, compilation and autotuning are excluded; the device is synchronised before each
clock read. Each row reports median time and spread (min-max) over repeats, images/s,
output Mpx/s, TFLOP/s (2 x multiply-adds counted from the plan), speed-up over eager fp32
NCHW, peak GPU memory, and PSNR of the method's output against the fp32 eager output, so
a fast wrong result cannot hide. Prints a markdown table; appends JSON rows to
OUT/bench_engine.jsonl (default benchmarks/results in a checkout, else ./bench_results).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
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


def time_fn(fn, inputs, device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls fn(inputs[i % len]), after `warmup` untimed ones;
    the device is synchronised before each clock read."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    sync(device)
    times = []
    for i in range(repeats):
        x = inputs[i % len(inputs)]
        sync(device)
        t0 = time.perf_counter()
        fn(x)
        sync(device)
        times.append(time.perf_counter() - t0)
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


def _default_out() -> str:
    repo = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    return str(repo) if repo.parent.is_dir() else "bench_results"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--preset", default="128", type=parse_size, help=f"LR size: {', '.join(PRESETS)} or WxH")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--dtype", nargs="+", default=["fp16"], help="low-precision dtypes on GPU (fp16 bf16)")
    p.add_argument(
        "--model", default="srresnet_x4", help="bundled name or .safetensors (SRResNet or a converted compact model)"
    )
    p.add_argument("--methods", nargs="*", default=None, help="substrings of method names to run (default all)")
    p.add_argument(
        "--max-autotune", action="store_true", help="also torch.compile mode=max-autotune (GPU; minutes to compile)"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 10 GPU, 5 CPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--out", default=_default_out(), help="folder for bench_engine.jsonl")
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
    model = load_generator(args.model)
    plan = compile_plan(model)
    macs = plan.model_macs  # the network's own multiply-adds, same for every method
    w, h = args.preset
    info = env_info(device)
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
        base = None
        methods = methods_for(device, args.dtype, model, args.methods, args.max_autotune, args.memory_budget)
        for name, dtype, build in methods:
            label = f"{name} {dtype}"
            try:
                t_build = time.perf_counter()
                fn = build()
                nhwc = getattr(fn, "nhwc", False)
                ins = inputs_nhwc if nhwc else inputs
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                y = fn(ins[0])  # first call: compile / autotune, and the parity output
                sync(device)
                t_first = time.perf_counter() - t_build
                y = y.permute(0, 3, 1, 2) if nhwc else y
                quality = psnr01(y, ref)
                times = time_fn(fn, ins, device, args.warmup, repeats)
            except Exception as e:  # a baseline that does not run here is reported, not fatal
                print(f"  {label}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:120]})", file=sys.stderr)
                continue
            med = statistics.median(times)
            if name == "eager NCHW" and dtype == "fp32":
                base = med
            row = {
                **info,
                "method": name,
                "dtype": dtype,
                "model": args.model,
                "lr_size": f"{w}x{h}",
                "batch": n,
                "median_s": med,
                "min_s": min(times),
                "max_s": max(times),
                "repeats": repeats,
                "first_call_s": t_first,
                "images_per_s": n / med,
                "out_mpx_per_s": n * w * h * plan.scale**2 / med / 1e6,
                "tflops": 2 * macs * n * w * h / med / 1e12,
                "share_of_peak": (2 * macs * n * w * h / med / 1e12) / info["peak_bf16_matmul_tflops"]
                if info.get("peak_bf16_matmul_tflops")
                else None,
                "speedup_vs_eager_fp32": (base / med) if base else None,
                "psnr_vs_fp32_db": quality,
                "peak_mem_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            }
            rows.append(row)
            print(f"  {label:40s} b{n} {med * 1000:9.2f} ms  x{row['speedup_vs_eager_fp32'] or 0:.2f}", file=sys.stderr)
            del fn
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench_engine.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(format_table(rows, info))
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
    lines = [
        f"device: {info['device']}; torch {info['torch']}, triton {info.get('triton', '-')}, "
        f"onnxruntime {info.get('onnxruntime', '-')}; git {info.get('git_sha', '-')}; {info['date']}"
        + (f"; peak bf16 matmul {peak:.0f} TFLOP/s (TFLOP/s column: share of it in brackets)" if peak else ""),
        "",
        "| method | dtype | LR size | batch | median ms (min-max) | img/s | out Mpx/s | TFLOP/s | vs eager fp32 "
        "| PSNR vs fp32 (dB) | peak MiB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        sp = f"{r['speedup_vs_eager_fp32']:.2f}x" if r["speedup_vs_eager_fp32"] else "-"
        mem = f"{r['peak_mem_mib']:.0f}" if r["peak_mem_mib"] is not None else "-"
        q = "inf" if math.isinf(r["psnr_vs_fp32_db"]) else f"{r['psnr_vs_fp32_db']:.1f}"
        share = f" ({r['share_of_peak']:.0%})" if r.get("share_of_peak") else ""
        lines.append(
            f"| {r['method']} | {r['dtype']} | {r['lr_size']} | {r['batch']} | {r['median_s'] * 1000:.2f} "
            f"({r['min_s'] * 1000:.2f}-{r['max_s'] * 1000:.2f}) | {r['images_per_s']:.2f} | {r['out_mpx_per_s']:.2f} "
            f"| {r['tflops']:.2f}{share} | {sp} | {q} | {mem} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(prog="python -m srgan_fast.bench"))
