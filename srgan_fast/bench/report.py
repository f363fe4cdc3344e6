"""What a results row records and how a run is reported: the machine and software
(env_info, git_sha, utc_date, host_peak_rss_mib; JSON keys shared by every benchmark),
the run folder (default_run_dir), the markdown table (format_table) and the bar chart (plot)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch


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
    for pkg in ("openvino", "ncnn", "pnnx"):  # the optional CPU peers ([bench] extra), read without importing
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
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


def plot(rows: list[dict], info: dict, path: str) -> None:
    """Horizontal bars of output Mpx/s per method and batch (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import MissingDependency

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


def _peak_note(info: dict) -> str:
    """The header's words on the matmul peak each row's share divides by ("" when not measured)."""
    if info.get("peak_bf16_matmul_tflops"):
        peak = info["peak_bf16_matmul_tflops"]
        return f"; peak bf16 matmul {peak:.0f} TFLOP/s (TFLOP/s column: share of it in brackets)"
    if info.get("peak_fp32_matmul_gflops") and info.get("peak_bf16_matmul_gflops"):
        return (
            f"; peak matmul ({info.get('peak_matmul', 'torch.mm')}) fp32 {info['peak_fp32_matmul_gflops']:.0f}, "
            f"bf16 {info['peak_bf16_matmul_gflops']:.0f} GFLOP/s (GFLOP/s column: share of the peak of the row's "
            "dtype in brackets)"
        )
    return ""


def _flops_cell(r: dict, cpu: bool) -> str:
    """TFLOP/s (GPU) or GFLOP/s (CPU), with the share of the peak in brackets (CPU: and whose)."""
    share = r.get("share_of_peak")
    if not cpu:
        return f"{r['tflops']:.2f}" + (f" ({share:.0%})" if share else "")
    gflops = r["gflops"] if r.get("gflops") is not None else r["tflops"] * 1e3
    whose = f" {r['share_of_peak_dtype']}" if r.get("share_of_peak_dtype") else ""
    return f"{gflops:.1f}" + (f" ({share:.0%}{whose})" if share else "")


def _accuracy_cells(r: dict) -> str:
    """max abs error and share of 8-bit values changed against fp32 ("-" in rows from before them)."""
    err, u8 = r.get("max_abs_err_vs_fp32"), r.get("u8_changed_share")
    return f"{err:.1e} | {u8:.3%}" if err is not None and u8 is not None else "- | -"


def format_table(rows: list[dict], info: dict) -> str:
    cpu = str(info.get("device", "")).startswith("CPU")  # env_info's words for a CPU run
    order = rows[0].get("order") if rows else None
    rss = max((r["host_peak_rss_mib"] for r in rows if r.get("host_peak_rss_mib")), default=None)
    peers = "".join(f", {k} {info[k]}" for k in ("openvino", "ncnn") if info.get(k))
    lines = [
        f"device: {info['device']}; torch {info['torch']}, triton {info.get('triton', '-')}, "
        f"onnxruntime {info.get('onnxruntime', '-')}{peers}; git {info.get('git_sha', '-')}; {info['date']}"
        + _peak_note(info)
        + (f"; order {order}" if order else "")
        + (f" (seed {rows[0]['order_seed']})" if order == "interleaved" else "")
        + (f"; load {info['loadavg_1m_start']:.1f}" if info.get("loadavg_1m_start") is not None else "")
        + (f"-{rows[0]['loadavg_1m_end']:.1f}" if rows and rows[0].get("loadavg_1m_end") is not None else "")
        + (f"; host peak RSS {rss:.0f} MiB" if rss else ""),
        "",
        "| method | dtype | LR size | batch | median ms (min-max) | img/s | out Mpx/s "
        f"| {'GFLOP/s (of peak)' if cpu else 'TFLOP/s'} | vs eager fp32 "
        "| PSNR vs fp32 (dB) | max abs err | uint8 changed | peak MiB | vs eager fp32 per round (min-max) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        sp = f"{r['speedup_vs_eager_fp32']:.2f}x" if r["speedup_vs_eager_fp32"] else "-"
        mem = f"{r['peak_mem_mib']:.0f}" if r["peak_mem_mib"] is not None else "-"
        q = "inf" if math.isinf(r["psnr_vs_fp32_db"]) else f"{r['psnr_vs_fp32_db']:.1f}"
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
            f"| {_flops_cell(r, cpu)} | {sp} | {q} | {_accuracy_cells(r)} | {mem} | {pr} |"
        )
    return "\n".join(lines)
