"""Bundle a trained generator with the package: measured, with its model card.

    python -m srgan_fast.training.bundle RUN_DIR NAME [--weights last|best] [--note TEXT]

Reads RUN_DIR/{config.json,log.jsonl,last.safetensors}, scores the generator on Set5 and Set14
(Y-PSNR/SSIM and texture, `srgan-fast eval`'s protocol) beside bicubic, the bundled models and
the authors' published outputs, and writes srgan_fast/weights/NAME.safetensors (fp16 storage)
and NAME.json (the same card, readable without loading the file). Nothing is overwritten
without --force. The card says what was run, for how long, on what, and what it scored.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

__all__ = ["score", "bundle", "main"]

SETS = ("Set5", "Set14")
AUTHORS = ("SRResNet-MSE", "SRGAN-VGG54")  # the paper's published x4 outputs, under <set>/x4/


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def score(method, device: str = "cpu") -> dict:
    """{set: {psnr, ssim, texture}} of a method (as `evaluate` takes it) on Set5 and Set14."""
    from ..quality.datasets import find_dataset
    from ..quality.evaluate import evaluate

    out = {}
    for s in SETS:
        m = method
        if isinstance(method, str) and method.startswith("authors:"):
            m = str(find_dataset(s) / "x4" / method.split(":", 1)[1])
        r = evaluate(find_dataset(s), method=m, device=device, progress=False)
        out[s] = {
            "psnr": round(r["mean_psnr"], 3),
            "ssim": round(r["mean_ssim"], 4),
            "texture": round(r["mean_texture"], 3),
        }
    return out


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]


def bundle(run: Path, name: str, weights: str = "last", note: str = "", force: bool = False) -> dict:
    import torch

    from ..weights import BUNDLED_DIR, load_generator, save_generator

    dst = BUNDLED_DIR / f"{name}.safetensors"
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists; pass --force to replace it")
    cfg = json.loads((run / "config.json").read_text())
    recs = _records(run)
    steps = max((r["step"] for r in recs if "step" in r), default=0)
    elapsed = max((r.get("elapsed_s", 0.0) for r in recs), default=0.0)
    g = load_generator(run / f"{weights}.safetensors")
    # scored as shipped: fp16 storage, loaded back as fp32
    tmp = run / f"{name}.fp16.safetensors"
    save_generator(g, tmp, dtype=torch.float16)
    ours = score(str(tmp))
    table = {name: ours, "bicubic": score("bicubic")}
    for other in ("srresnet_x4",):
        if (BUNDLED_DIR / f"{other}.safetensors").exists() and other != name:
            table[other] = score(other)
    for a in AUTHORS:
        table[f"authors' {a}"] = score(f"authors:{a}")
    vals = [r for r in recs if "val_psnr" in r]
    card = {
        "name": name,
        "trained": (
            f"{cfg['phase']} phase ({'MSE' if cfg.get('content_loss') == 'mse' else 'VGG54'} content + "
            f"{cfg['adv_weight']:g} adversarial), {steps:,} Adam steps x batch {cfg['batch_size']} "
            f"({steps * cfg['batch_size']:,} random {cfg['crop']}x{cfg['crop']} HR crops) from {cfg['init_from']}, "
            f"{elapsed / 60:.0f} min on {_cpu_name()} ({_threads()} threads, "
            f"{'bf16 autocast' if cfg['amp'] == 'bf16' else 'fp32'})"
        ),
        "steps": steps,
        "paper_steps": 200_000,
        "wall_minutes": round(elapsed / 60, 1),
        "data": "T91 + BSD200 (290 photos; t20 skipped, smaller than a crop), LR by MATLAB-compatible "
        "bicubic x1/4, flips + rot90",
        "optimizer": f"Adam(lr {cfg['lr']:g}, betas {cfg['betas'][0]}/{cfg['betas'][1]}) for G and D",
        "storage": "fp16",
        "eval": ours,
        "eval_note": "Y-channel PSNR/SSIM, shave 4, MATLAB LR_x4 inputs; texture = mean Y gradient magnitude "
        "of SR over HR (srgan-fast eval); scored from the fp16 file as shipped",
        "compare": table,
        "val_curve": [{k: r[k] for k in ("step", "val_psnr", "val_texture") if k in r} for r in vals],
        "note": note,
        "train_config": cfg,
    }
    save_generator(g, dst, card=card, dtype=torch.float16)
    (BUNDLED_DIR / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    tmp.unlink(missing_ok=True)
    return card


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m srgan_fast.training.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="the training run folder (config.json, log.jsonl, last.safetensors)")
    p.add_argument("name", help="the bundled model's name (srgan_fast/weights/NAME.safetensors)")
    p.add_argument("--weights", choices=["last", "best"], default="last", help="which checkpoint (default last)")
    p.add_argument("--note", default="", help="free text for the model card (what was decided and why)")
    p.add_argument("--force", action="store_true", help="replace an existing bundled model of that name")
    a = p.parse_args(argv)
    try:
        card = bundle(a.run, a.name, a.weights, a.note, a.force)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"bundle: error: {e}", file=sys.stderr)
        return 2
    for k, v in card["compare"].items():
        cells = [f"{v[s]['psnr']:.2f} / {v[s]['ssim']:.4f} / {v[s]['texture']:.3f}" for s in SETS]
        print(f"| {k} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
