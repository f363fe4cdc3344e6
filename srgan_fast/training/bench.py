"""Training throughput probe: crops/s and TFLOP/s of the real training step, per batch size and
compile mode. `python -m srgan_fast.training.bench --preset srresnet_x4 --batch-sizes 64,128 --compile off,default`

The photos are loaded once; each configuration builds a fresh generator and optimizer, runs
`--warm-steps` steps (cuDNN autotuning, torch.compile) and then the trainer's own `Step`
on the on-device data for `--seconds`, synchronizing before the clock is read. TFLOP/s counts
the generator's work only: forward + backward ~ 3 forwards x 2 FLOP per multiply-add
(`trainer.generator_macs`), as in log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from srgan_fast.bench import git_sha, sync, utc_date


def probe(cfg, pairs, dev: torch.device, compile_mode: str, seconds: float, warm_steps: int) -> dict:
    """Steady-state steps/s of `cfg` (srresnet phase) with a fresh model; one result row."""
    from srgan_fast.families.srresnet import Generator, GeneratorConfig

    from .data import DeviceCrops
    from .trainer import Step, _adam, generator_macs

    gcfg = GeneratorConfig.from_name(cfg.model)
    torch.manual_seed(cfg.seed)
    mem = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G = Generator(gcfg).to(dev, memory_format=mem).train()
    optG = _adam(G.parameters(), cfg, dev)
    G_run = torch.compile(G, mode=compile_mode) if compile_mode != "off" else G
    data = DeviceCrops(pairs, cfg.crop, gcfg.scale, cfg.seed, cfg.batch_size, dev, channels_last=cfg.channels_last)
    step = Step(cfg, data, G_run, None, optG, None, None, dev)
    t0 = time.perf_counter()
    for i in range(warm_steps):
        step(i, cfg.lr)
    sync(dev)
    t_warm = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while True:
        stats = step(warm_steps + n, cfg.lr)
        n += 1
        if n % 5 == 0:
            sync(dev)
            if time.perf_counter() - t0 >= seconds:
                break
    dt = time.perf_counter() - t0
    loss = stats["loss"].item()
    crops_s = n * cfg.batch_size / dt
    flop_per_crop = 3 * 2 * generator_macs(gcfg) * (cfg.crop // gcfg.scale) ** 2
    return {
        "preset_model": cfg.model,
        "crop": cfg.crop,
        "batch": cfg.batch_size,
        "compile": compile_mode,
        "amp": cfg.amp,
        "channels_last": cfg.channels_last,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "crops_s": crops_s,
        "it_s": n / dt,
        "tflops": crops_s * flop_per_crop / 1e12,
        "steps": n,
        "seconds": dt,
        "warm_s": t_warm,
        "loss": loss,
        "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "git_sha": git_sha() or "-",
        "date": utc_date(),
    }


def main(argv: list[str] | None = None) -> int:
    from .config import PRESETS

    p = argparse.ArgumentParser(prog="python -m srgan_fast.training.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="srresnet_x4", choices=sorted(PRESETS), help="training preset")
    p.add_argument("--batch-sizes", default="16", help="comma-separated batch sizes (default 16)")
    p.add_argument("--compile", default="off", help="comma-separated compile modes (off, default, ...)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per configuration")
    p.add_argument("--warm-steps", type=int, default=5, help="untimed steps first (autotune, compile)")
    p.add_argument("--out", default="runs/bench", help="folder for results.jsonl")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    args = p.parse_args(argv)
    from srgan_fast.families.srresnet import GeneratorConfig
    from srgan_fast.quality.datasets import data_root

    from .config import apply_overrides, from_preset
    from .data import load_photos
    from .trainer import _resolve_dir

    base = apply_overrides(from_preset(args.preset), args.set)
    dev = torch.device(base.device if base.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    root = data_root(base.data_root or None)
    scale = GeneratorConfig.from_name(base.model).scale
    pairs = load_photos([_resolve_dir(d, root) for d in base.train_dirs], scale, base.crop)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for b in [int(x) for x in args.batch_sizes.split(",") if x]:
        for c in [x for x in args.compile.split(",") if x]:
            cfg = apply_overrides(base, [f"batch_size={b}", f"compile={c}"])
            try:
                row = probe(cfg, pairs, dev, c, args.seconds, args.warm_steps)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as e:  # e.g. out of memory, a compile failure
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                print(f"bench: batch {b} compile {c}: {why}", file=sys.stderr)
                continue
            finally:
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(dev)
            row["preset"] = args.preset
            rows.append(row)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr)
    print("| preset | device | batch | compile | amp | crops/s | it/s | TFLOP/s (G, fwd+bwd) | warm-up s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['preset']} | {r['device']} | {r['batch']} | {r['compile']} | {r['amp']} | {r['crops_s']:.1f} | "
            f"{r['it_s']:.2f} | {r['tflops']:.3f} | {r['warm_s']:.1f} |"
        )
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
