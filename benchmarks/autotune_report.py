"""Which conv2d_fused config autotuning chose, per (op shape, epilogue, M bucket): a GPU report.

    python benchmarks/autotune_report.py --preset 270p --batch 1 8 --dtype fp16

Runs the engine (Triton backend) once per batch size, then prints the autotuner's cache as a
markdown table: one row per key (Cin, Cout, K, M bucket, epilogue flags) with the config it
picked (BLOCK_M x BLOCK_N x BLOCK_K, warps, stages). Batch 1 and batch 8 tune apart, and so
do ops with different epilogues (the key lists every flag).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_fast.bench import PRESETS, parse_size  # noqa: E402
from srgan_fast.engine import Engine  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="270p", type=parse_size, help=f"LR size: {', '.join(PRESETS)} or WxH")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"], help="storage dtype")
    p.add_argument("--model", default="srresnet_x4", help="bundled name or .safetensors")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("autotune_report needs a CUDA GPU", file=sys.stderr)
        return 2
    from srgan_fast.kernels import conv2d_fused as k

    eng = Engine(args.model, device="cuda", dtype=args.dtype, backend="triton")
    w, h = args.preset
    for n in args.batch:
        eng.upscale(torch.rand(n, h, w, 3, device="cuda"))
    torch.cuda.synchronize()
    names = k._AUTOTUNE_KEY
    print(f"conv2d_fused autotune choices, {torch.cuda.get_device_name()}, LR {w}x{h}, {args.dtype}")
    print()
    print("| " + " | ".join(names) + " | BLOCK_M x BLOCK_N x BLOCK_K | warps | stages |")
    print("|" + " --- |" * (len(names) + 3))
    for key, cfg in sorted(k._conv2d_fused_tuned.cache.items(), key=lambda kv: str(kv[0])):
        vals = list(key)[: len(names)]
        kw = cfg.kwargs
        blocks = f"{kw.get('BLOCK_M')} x {kw.get('BLOCK_N', '-')} x {kw.get('BLOCK_K')}"
        print("| " + " | ".join(str(v) for v in vals) + f" | {blocks} | {cfg.num_warps} | {cfg.num_stages} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
