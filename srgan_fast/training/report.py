"""Helpers of `benchmarks/gpu_train.sh`: evaluate runs, pick settings from the probe, summarize, pack.

python -m srgan_fast.training.report eval OUT NAME=WEIGHTS ...   Set5/Set14 Y-PSNR/SSIM into OUT/eval.json
                                                      (cached per file and mtime; NAME=bicubic too)
python -m srgan_fast.training.report pick-compile PROBE.jsonl BATCH   "default" if compile beat eager by 15%
python -m srgan_fast.training.report steps PROBE.jsonl BATCH COMPILE SECONDS   steps in that many seconds
python -m srgan_fast.training.report pick-init OUT MODEL CANDIDATE   CANDIDATE if it beats bundled MODEL on Set5
python -m srgan_fast.training.report summary OUT                  OUT/summary.md (printed too)
python -m srgan_fast.training.report pack OUT DEST                the files worth keeping, as <= 4 files in DEST
"""

from __future__ import annotations

import json
import statistics
import sys
import tarfile
from pathlib import Path

SETS = ("Set5", "Set14")


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def evaluate_runs(out: Path, specs: list[str], device: str = "auto") -> dict:
    import torch

    from srgan_fast.quality.datasets import find_dataset
    from srgan_fast.quality.evaluate import evaluate

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = out / "eval.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    for spec in specs:
        name, _, weights = spec.partition("=")
        weights = weights or name
        if weights != "bicubic" and not Path(weights).exists() and "/" in weights:
            print(f"eval: {name}: {weights} does not exist; skipped", file=sys.stderr)
            continue
        key = weights
        if "/" in weights:  # a file: cached until it changes
            key = f"{weights}@{Path(weights).stat().st_mtime:.0f}"
        if table.get(name, {}).get("key") == key:
            continue
        row = {"key": key, "weights": weights}
        for s in SETS:
            r = evaluate(find_dataset(s), method=weights, device=device, progress=False)
            row[s] = {
                "psnr": round(r["mean_psnr"], 3),
                "ssim": round(r["mean_ssim"], 4),
                "texture": round(r["mean_texture"], 3),
            }
        table[name] = row
        path.write_text(json.dumps(table, indent=2) + "\n")
        print(f"eval: {name}: " + ", ".join(f"{s} {row[s]['psnr']:.3f} dB / {row[s]['ssim']:.4f}" for s in SETS))
    return table


def pick_compile(probe: Path, batch: int) -> str:
    rows = [r for r in _jsonl(probe) if r["batch"] == batch]
    eager = max((r["crops_s"] for r in rows if r["compile"] == "off"), default=0.0)
    comp = max((r["crops_s"] for r in rows if r["compile"] != "off"), default=0.0)
    return "default" if eager and comp > 1.15 * eager else "off"


def steps_in(probe: Path, batch: int, compile_mode: str, seconds: float, fallback: int) -> int:
    rows = [r for r in _jsonl(probe) if r["batch"] == batch and r["compile"] == compile_mode]
    if not rows:
        rows = [r for r in _jsonl(probe) if r["batch"] == batch]
    return max(1, int(rows[0]["it_s"] * seconds)) if rows else fallback


def pick_init(out: Path, model: str, candidate: str) -> str:
    """The candidate weights if they beat the bundled model on Set5 (and fit the same generator)."""
    from srgan_fast.weights import read_metadata, resolve

    if not Path(candidate).exists():
        return model
    try:
        same = read_metadata(resolve(model)).get("config") == read_metadata(candidate).get("config")
    except ValueError:
        same = False
    if not same:
        return candidate
    table = evaluate_runs(out, [f"bundled_{model}={model}", f"candidate={candidate}"])
    better = table["candidate"]["Set5"]["psnr"] > table[f"bundled_{model}"]["Set5"]["psnr"]
    return candidate if better else model


def _run_block(run: Path, title: str) -> list[str]:
    recs = _jsonl(run / "log.jsonl")
    tr = [r for r in recs if "crops_s" in r]
    va = [r for r in recs if "val_psnr" in r]
    if not recs:
        return [f"### {title}: not run", ""]
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    last = tr[-1] if tr else {}
    steps = max((r.get("step", 0) for r in recs), default=0)
    lines = [
        f"### {title} (`{run.name}`)",
        "",
        f"- steps {steps} x batch {cfg.get('batch_size')} = {steps * (cfg.get('batch_size') or 0):,} crops of "
        f"{cfg.get('crop')}px; run time {max(r.get('elapsed_s', 0) for r in recs) / 60:.2f} min (across resumes); "
        f"init_from {cfg.get('init_from') or '-'}; compile {cfg.get('compile')}; amp {cfg.get('amp')}",
    ]
    if tr:
        late = tr[len(tr) // 2 :]
        lines.append(
            f"- throughput (median of the second half of the log): "
            f"{statistics.median(r['crops_s'] for r in late):,.0f} crops/s, "
            f"{statistics.median(r['tflops'] for r in late):.3g} TFLOP/s (generator, fwd+bwd)"
        )
        keys = [k for k in ("loss", "lossD", "lossG", "content", "adv", "d_real", "d_fake", "lr") if k in last]
        lines.append("- last log line: " + ", ".join(f"{k} {last[k]:.4g}" for k in keys))
    if va:
        best = max(va, key=lambda r: r["val_psnr"])
        lines.append(
            f"- validation ({cfg.get('val_dir')}): last {va[-1]['val_psnr']:.3f} dB at step {va[-1]['step']}, "
            f"best {best['val_psnr']:.3f} dB at step {best['step']}"
        )
    ev = [r for r in recs if r.get("event") in ("stop", "interrupted", "resume")]
    for r in ev:
        lines.append(f"- {r['event']} at step {r['step']}: {r.get('reason') or r.get('signal') or ''}")
    samples = sorted((run / "samples").glob("*.png"))
    if samples:
        lines.append(f"- sample crops (LR | SR | HR): {len(samples)} images, last `{samples[-1].name}`")
    return [*lines, ""]


def summary(out: Path) -> str:
    lines = [f"# gpu_train summary: {out}", ""]
    probe = _jsonl(out / "probe" / "results.jsonl")
    if probe:
        lines += [
            "## (a) throughput probe (srresnet_x4 step, on-device data)",
            "",
            "| device | batch | compile | amp | crops/s | it/s | TFLOP/s | warm-up s | peak GB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in probe:
            mem = f"{r['peak_mem_gb']:.1f}" if r.get("peak_mem_gb") else "-"
            lines.append(
                f"| {r['device']} | {r['batch']} | {r['compile']} | {r['amp']} | {r['crops_s']:,.0f} | "
                f"{r['it_s']:.3g} | {r['tflops']:.3g} | {r['warm_s']:.1f} | {mem} |"
            )
        lines.append("")
    lines += ["## (b), (c) training runs", ""]
    lines += _run_block(out / "srresnet", "(b) srresnet_x4")
    lines += _run_block(out / "srgan", "(c) srgan_x4 (content_loss=mse)")
    ev = out / "eval.json"
    if ev.exists():
        table = json.loads(ev.read_text())
        lines += ["## Y-PSNR / SSIM (x4, shave 4)", "", "| model | Set5 | Set14 | weights |"]
        lines.append("| --- | --- | --- | --- |")
        for name, row in table.items():
            cells = [f"{row[s]['psnr']:.3f} / {row[s]['ssim']:.4f}" if s in row else "-" for s in SETS]
            lines.append(f"| {name} | {' | '.join(cells)} | `{row['weights']}` |")
        lines.append("")
    text = "\n".join(lines)
    (out / "summary.md").write_text(text + "\n")
    return text


def pack(out: Path, dest: Path) -> list[Path]:
    """results.tgz (logs, configs, probe, eval, summary, samples, curves) + the weights worth keeping."""
    dest.mkdir(parents=True, exist_ok=True)
    keep = []
    for run in ("srresnet", "srgan"):
        for f in ("log.jsonl", "config.json", "summary.json", "loss.png"):
            keep.append(out / run / f)
        keep += sorted((out / run / "samples").glob("*.png"))[-3:]
    keep += [out / "summary.md", out / "eval.json", out / "probe" / "results.jsonl", out / "probe" / "table.md"]
    keep += sorted(out.glob("*.log"))
    tgz = dest / "gpu_train_results.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        for f in keep:
            if f.exists():
                t.add(f, arcname=str(f.relative_to(out)))
    written = [tgz]
    for src, name in ((out / "srresnet" / "best.safetensors", "srresnet_best.safetensors"),
                      (out / "srgan" / "last.safetensors", "srgan_last.safetensors")):  # fmt: skip
        if src.exists():
            (dest / name).write_bytes(src.read_bytes())
            written.append(dest / name)
    return written


def main(argv: list[str] | None = None) -> int:
    a = sys.argv[1:] if argv is None else argv
    if not a:
        print(__doc__)
        return 2
    cmd, rest = a[0], a[1:]
    if cmd == "eval":
        evaluate_runs(Path(rest[0]), rest[1:])
    elif cmd == "pick-compile":
        print(pick_compile(Path(rest[0]), int(rest[1])))
    elif cmd == "steps":
        print(steps_in(Path(rest[0]), int(rest[1]), rest[2], float(rest[3]), int(rest[4]) if len(rest) > 4 else 2000))
    elif cmd == "pick-init":
        print(pick_init(Path(rest[0]), rest[1], rest[2]))
    elif cmd == "summary":
        print(summary(Path(rest[0])))
    elif cmd == "pack":
        for p in pack(Path(rest[0]), Path(rest[1])):
            print(f"packed {p} ({p.stat().st_size / 2**20:.1f} MiB)")
    else:
        print(f"report: unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
