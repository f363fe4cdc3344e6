"""Training throughput probe: crops/s and TFLOP/s of the real training loop, per batch size and
compile mode. `python -m training.bench --preset srresnet_x4 --batch-sizes 16,64 --compile off,default`

Each configuration runs `train()` itself (on-device data, the same step, logging every
`--log-every` steps) for about `--seconds` after a warm-up, in its own run folder. The
figure is the median over the logged windows after the first two (which hold cuDNN
autotuning / torch.compile). TFLOP/s counts the generator's work only: forward + backward
~ 3 forwards x 2 FLOP per multiply-add (`trainer.generator_macs`), as in log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def _git_sha() -> str:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True)
        return r.stdout.strip() or "-"
    except OSError:
        return "-"


def probe(preset: str, sets: list[str], batch: int, compile_mode: str, seconds: float, out: Path, log_every: int):
    from .config import apply_overrides, from_preset
    from .trainer import train

    warm = 90.0 if compile_mode != "off" else 10.0  # compile / cuDNN autotune before the windows
    cfg = apply_overrides(
        from_preset(preset),
        [
            *sets,
            f"batch_size={batch}",
            f"compile={compile_mode}",
            f"out={out}",
            "val_dir=",
            "ckpt_every=0",
            f"log_every={log_every}",
            "iters=1000000000",
            f"max_minutes={(warm + seconds + 10) / 60}",
        ],
    )
    t0 = time.time()
    train(cfg, progress=False)
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"crops_s"' in x]
    # windows after the first two, and after the warm-up allowance
    t_first = recs[0]["elapsed_s"] if recs else 0.0
    steady = [r for r in recs[2:] if r["elapsed_s"] >= min(t_first + warm, recs[-1]["elapsed_s"])]
    steady = steady or recs[2:] or recs
    dev = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    return {
        "preset": preset,
        "model": cfg.model,
        "crop": cfg.crop,
        "batch": batch,
        "compile": compile_mode,
        "amp": cfg.amp,
        "channels_last": cfg.channels_last,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "crops_s": statistics.median(r["crops_s"] for r in steady),
        "tflops": statistics.median(r["tflops"] for r in steady),
        "it_s": statistics.median(r["it_s"] for r in steady),
        "windows": len(steady),
        "steps": recs[-1]["step"] if recs else 0,
        "wall_s": time.time() - t0,
        "torch": torch.__version__,
        "git": _git_sha(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    from .config import PRESETS

    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="srresnet_x4", choices=sorted(PRESETS), help="training preset")
    p.add_argument("--batch-sizes", default="16", help="comma-separated batch sizes (default 16)")
    p.add_argument("--compile", default="off", help="comma-separated compile modes (off, default, ...)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per configuration")
    p.add_argument("--log-every", type=int, default=20, help="steps per timing window")
    p.add_argument("--out", default="runs/bench", help="folder for the probe runs and results.jsonl")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = []
    for b in [int(x) for x in args.batch_sizes.split(",") if x]:
        for c in [x for x in args.compile.split(",") if x]:
            try:
                row = probe(args.preset, args.set, b, c, args.seconds, out / f"{args.preset}_b{b}_{c}", args.log_every)
            except (ValueError, FileNotFoundError, RuntimeError) as e:  # e.g. out of memory at a large batch
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                print(f"bench: batch {b} compile {c}: {why}", file=sys.stderr)
                continue
            rows.append(row)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr)
    print("| preset | device | batch | compile | amp | crops/s | it/s | TFLOP/s (G, fwd+bwd) | windows |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['preset']} | {r['device']} | {r['batch']} | {r['compile']} | {r['amp']} | {r['crops_s']:.1f} | "
            f"{r['it_s']:.2f} | {r['tflops']:.3f} | {r['windows']} |"
        )
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
