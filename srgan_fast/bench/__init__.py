"""Throughput of the engine against PyTorch eager, torch.compile and ONNX Runtime (and, on a
CPU, OpenVINO and ncnn where `pip install 'srgan-fast[bench]'` installed them).

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
Mpx/s, TFLOP/s (GPU) or GFLOP/s (CPU) (2 x multiply-adds counted from the plan) with its
share of the matmul peak measured at the start of the run (GPU: bf16 8192^3; CPU: torch.mm
2048^3 in fp32 and in bf16 with the bench's threads, a row against the peak of its dtype),
speed-up over eager fp32 NCHW (ratio of medians, and, interleaved, the median and range of
the per-round ratios), peak GPU memory, and the method's output against the fp32 eager
output (PSNR, max abs error, share of 8-bit values changed), so a fast wrong result cannot
hide. A row whose runtime is not installed is skipped with a one-line reason. Prints a
markdown table; appends JSON rows to OUT/bench_engine.jsonl (--out; default a new run
folder ./bench_results/<UTC time>-<model>/, with table.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import torch

from ..families.srresnet.arch import output_to_unit
from ..options import parse_size as parse_size_bytes
from ..plan import compile_plan
from ..weights import load_generator
from .methods import BASELINE, accuracy, load_like, methods_for, psnr01
from .report import default_run_dir, env_info, format_table, git_sha, host_peak_rss_mib, plot, utc_date
from .timing import (
    cpu_peak_matmul_gflops,
    cuda_time,
    now,
    peak_matmul_tflops,
    per_round_speedups,
    round_orders,
    sync,
    time_fn,
    time_interleaved,
    timing_stats,
)

# the names `from srgan_fast.bench import ...` has always given (benchmarks/, training/bench.py, tests)
__all__ = [
    "BASELINE",
    "PRESETS",
    "accuracy",
    "build_parser",
    "cpu_peak_matmul_gflops",
    "cuda_time",
    "default_run_dir",
    "env_info",
    "format_table",
    "git_sha",
    "host_peak_rss_mib",
    "load_like",
    "main",
    "methods_for",
    "now",
    "parse_size",
    "peak_matmul_tflops",
    "per_round_speedups",
    "plot",
    "psnr01",
    "round_orders",
    "sync",
    "time_fn",
    "time_interleaved",
    "timing_stats",
    "utc_date",
]

# main() and its steps look `now` and `methods_for` up in this module, and hand `now` to the
# timing loops as their clock: a test replaces them here (monkeypatch.setattr(bench, "now", ...)).

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


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--preset", default="128", type=parse_size, help=f"LR size: {', '.join(PRESETS)} or WxH")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument(
        "--dtype",
        nargs="+",
        default=["fp16"],
        help="low-precision dtypes: on GPU fp16 and/or bf16; on CPU bf16 adds eager, torch and native bf16 rows",
    )
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
        "--pause", type=float, default=0.0, metavar="S",
        help="interleaved: seconds slept before each call (default 0), so that a runtime whose idle\n"
        "  threads spin on after its call (ONNX Runtime's pool) cannot slow the method after it",
    )  # fmt: skip
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
        help="skip measuring the matmul peak each row reports its share of (GPU: bf16 8192^3;\n"
        "  CPU: torch.mm 2048^3, fp32 and bf16, about a second)",
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
    acc = accuracy(y, ref)
    del y
    peak = (torch.cuda.max_memory_allocated(device) - held) / 2**20 if device.type == "cuda" else None
    print(f"  {label:40s} built, first call {t_first:.2f} s", file=sys.stderr)
    # what a peer row ran with (OpenVINO's compiled properties, ncnn's options)
    settings = getattr(fn, "properties", None) or getattr(fn, "options", None) or None
    return {
        "fn": fn, "ins": ins, "first_call_s": t_first, **acc, "peak_mem_mib": peak,
        "engine_backend": None if eng is None else eng.backend, "runtime_settings": settings,
    }  # fmt: skip


def _skipped(label: str, e: BaseException) -> None:
    msg = str(e).splitlines()[0][:120] if str(e) else ""
    print(f"  {label}: skipped ({type(e).__name__}: {msg})", file=sys.stderr)


def _inputs(n: int, w: int, h: int, device, model):
    """Three rotating input sets of batch n (NCHW, and NHWC for the engine rows) and the fp32
    eager output for the first, the reference every method's PSNR is measured against."""
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.rand(n, 3, h, w, generator=gen).to(device) for _ in range(3)]
    inputs_nhwc = [x.permute(0, 2, 3, 1).contiguous() for x in inputs]
    with torch.inference_mode():
        m32 = load_like(model).to(device)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            ref = output_to_unit(m32, m32(inputs[0]))  # fp32 reference (no TF32)
        del m32
    return inputs, inputs_nhwc, ref


def _run_interleaved(
    methods, inputs, inputs_nhwc, ref, device, warmup: int, repeats: int, seed: int, pause: float = 0.0
) -> list:
    """--order interleaved: every method built and warm before the first timed round, and kept
    alive to the last. One (name, dtype, prepared dict without fn, times) per method that ran."""
    done = []
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
    print(f"  timing {warmup} + {repeats} rounds of {len(live)} methods", file=sys.stderr)
    times, errors = time_interleaved(calls, repeats, warmup, seed, device, clock=now, pause=pause)
    for i, (name, dtype, p) in enumerate(live):
        if i in errors:
            _skipped(f"{name} {dtype}", errors[i])
            continue
        p.pop("fn")
        done.append((name, dtype, p, times[i]))
    del live, calls
    return done


def _run_sequential(methods, inputs, inputs_nhwc, ref, device, warmup: int, repeats: int) -> list:
    """--order sequential: each method built, timed and freed before the next is built.
    One (name, dtype, prepared dict without fn, times) per method that ran."""
    done = []
    for name, dtype, build in methods:
        try:
            p = _prepare(f"{name} {dtype}", build, inputs, inputs_nhwc, ref, device)
            times = time_fn(p["fn"], p["ins"], device, warmup, repeats, clock=now)
        except Exception as e:  # a baseline that does not run here is reported, not fatal
            _skipped(f"{name} {dtype}", e)
            continue
        if device.type == "cuda":
            p["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        p.pop("fn")
        done.append((name, dtype, p, times))
        del p
    return done


def _measure_batch(n: int, args, model, device, repeats: int) -> list:
    """Every method at batch size n, on the same inputs, in the order --order asks for:
    (name, dtype, prepared dict without fn, times) per method that ran."""
    w, h = args.preset
    inputs, inputs_nhwc, ref = _inputs(n, w, h, device, model)
    methods = methods_for(device, args.dtype, model, args.methods, args.max_autotune, args.memory_budget)
    if args.order == "interleaved":
        return _run_interleaved(
            methods, inputs, inputs_nhwc, ref, device, args.warmup, repeats, args.order_seed, args.pause
        )
    return _run_sequential(methods, inputs, inputs_nhwc, ref, device, args.warmup, repeats)


def _row(args, info: dict, plan, n: int, repeats: int, measured, base_times, rss) -> dict:
    """One results row (a line of bench_engine.jsonl): the run's environment, then the method's timing."""
    name, dtype, p, times = measured
    interleaved = args.order == "interleaved"
    w, h = args.preset
    st = timing_stats(times, base_times, paired=interleaved)
    med = st["median_s"]
    tflops = 2 * plan.model_macs * n * w * h / med / 1e12  # the network's own multiply-adds, same for every method
    if info.get("peak_bf16_matmul_tflops"):  # GPU: the bf16 tensor-core peak
        peak_of, share = "bf16", tflops / info["peak_bf16_matmul_tflops"]
    else:  # CPU: the peak of the row's own dtype (fp32 rows against fp32, bf16 rows against bf16)
        peak_of = dtype if info.get(f"peak_{dtype}_matmul_gflops") else None
        share = tflops * 1e3 / info[f"peak_{dtype}_matmul_gflops"] if peak_of else None
    return {
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
        "gflops": tflops * 1e3,
        "share_of_peak": share,
        "share_of_peak_dtype": peak_of,  # whose matmul peak share_of_peak divides by
        "speedup_vs_eager_fp32": st["speedup_vs_eager_fp32"],
        "psnr_vs_fp32_db": p["psnr_vs_fp32_db"],
        "max_abs_err_vs_fp32": p["max_abs_err_vs_fp32"],
        "u8_changed_share": p["u8_changed_share"],
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
        "runtime_settings": p["runtime_settings"],  # peer rows: OpenVINO's properties, ncnn's options
    }


def _save(rows: list[dict], table: str, args, argv, prog: str | None) -> None:
    """Append the rows to OUT/bench_engine.jsonl (a new run folder, with table.md, without --out)."""
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
    if repeats < 1 or args.warmup < 0 or not args.pause >= 0:
        print("bench: --repeats must be at least 1, --warmup and --pause at least 0", file=sys.stderr)
        return 2
    model = load_generator(args.model)
    plan = compile_plan(model)
    info = env_info(device)
    if hasattr(os, "getloadavg"):
        info["loadavg_1m_start"] = os.getloadavg()[0]
    if device.type == "cuda" and args.peak:
        info["peak_bf16_matmul_tflops"] = peak_matmul_tflops(device)
        print(f"  peak: bf16 matmul 8192^3 {info['peak_bf16_matmul_tflops']:.0f} TFLOP/s", file=sys.stderr)
    if device.type == "cpu" and args.peak:  # with the threads every row runs with
        n, calls = 2048, 5
        for d, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            info[f"peak_{d}_matmul_gflops"] = cpu_peak_matmul_gflops(dt, n=n, calls=calls)
        info["peak_matmul"] = f"torch.mm {n}^3, {torch.get_num_threads()} threads, median of {calls}"
        print(
            f"  peak: {info['peak_matmul']}: fp32 {info['peak_fp32_matmul_gflops']:.0f}, "
            f"bf16 {info['peak_bf16_matmul_gflops']:.0f} GFLOP/s",
            file=sys.stderr,
        )
    if args.memory_budget:
        info["engine_memory_budget"] = args.memory_budget
    rows = []
    for n in args.batch:
        done = _measure_batch(n, args, model, device, repeats)
        base_times = next((t for name, dtype, _, t in done if (name, dtype) == BASELINE), None)
        rss = host_peak_rss_mib()
        for measured in done:
            row = _row(args, info, plan, n, repeats, measured, base_times, rss)
            rows.append(row)
            name, dtype, med, paired = measured[0], measured[1], row["median_s"], row["speedup_vs_eager_fp32_paired"]
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
    _save(rows, table, args, argv, prog)
    print(table)
    if args.plot:
        plot(rows, info, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
