"""The native backend's ISA builds on this CPU: AVX-512 (+bf16), AVX2+FMA and the 128-bit generic
path, each in its own process (the build is chosen once per process: SRGAN_FAST_CPU_ISA), against
the torch backend (oneDNN), unheld and held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2).

What an AVX2-only laptop would run, measured on this machine's cores: a proxy (same caches and
clock, the wider vectors switched off), not a laptop's figures.

    python benchmarks/cpu_isa.py [--families srresnet_x4 compact msrresnet rrdbnet] [--rounds 5]

Rounds are interleaved: each round starts every variant's process once (weights loaded, one
untimed call) and takes the median of --calls calls, 0.3 s apart; the table gives each variant's
median over rounds and its time over native AVX-512's in the same round, median (min-max).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
from srgan_fast.engine import Engine
torch.set_num_threads(2)
model, size, backend, calls = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
e = Engine(model, backend=backend)
x = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
e.upscale(x)
ts = []
for _ in range(calls):
    time.sleep(0.3)
    t = time.perf_counter(); e.upscale(x); ts.append(time.perf_counter() - t)
isa = ""
if backend == "native":
    from srgan_fast.backends import native
    isa = native.isa()
print(json.dumps({"s": sorted(ts)[len(ts) // 2], "isa": isa}))
"""

VARIANTS = {  # label: (backend, environment)
    "native avx512": ("native", {"SRGAN_FAST_CPU_ISA": "avx512"}),
    "native avx2": ("native", {"SRGAN_FAST_CPU_ISA": "avx2"}),
    "native generic": ("native", {"SRGAN_FAST_CPU_ISA": "generic"}),
    "torch (oneDNN)": ("torch", {}),
    # oneDNN's convolutions and ATen's own kernels both held to AVX2
    "torch, AVX2 only": ("torch", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", default=["srresnet_x4", "compact", "msrresnet", "rrdbnet"])
    p.add_argument(
        "--models",
        default=os.environ.get("MODELS_DIR", "/tmp/srgan_fast_cpu_models"),
        help="folder of compact/msrresnet/rrdbnet .safetensors (benchmarks/cpu_session.sh makes them)",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--calls", type=int, default=3, help="timed calls per process (default 3)")
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args()
    rows = []
    for fam in a.families:
        model = fam if fam == "srresnet_x4" else os.path.join(a.models, f"{fam}.safetensors")
        size = 64 if fam == "rrdbnet" else 128
        times: dict[str, list[float]] = {k: [] for k in VARIANTS}
        isas: dict[str, str] = {}
        for _ in range(a.rounds):
            for label, (backend, env) in VARIANTS.items():
                r = subprocess.run(
                    [sys.executable, "-c", CHILD, model, str(size), backend, str(a.calls)],
                    env={**os.environ, **env}, capture_output=True, text=True, timeout=1800,
                )  # fmt: skip
                if r.returncode:
                    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
                    sys.exit(f"{fam} {label}: {last}")
                got = json.loads(r.stdout.strip().splitlines()[-1])
                times[label].append(got["s"])
                isas[label] = got["isa"]
        base = times["native avx512"]
        print(f"\n{fam}, {size}x{size} LR, fp32, 2 threads")
        print("| variant | kernels | median ms | vs native avx512, per round |\n| --- | --- | ---: | --- |")
        for label, ts in times.items():
            ratio = [t / b for t, b in zip(ts, base)]
            print(
                f"| {label} | {isas[label] or '-'} | {statistics.median(ts) * 1e3:.0f} | "
                f"{statistics.median(ratio):.2f}x ({min(ratio):.2f}-{max(ratio):.2f}) |"
            )
            rows.append(
                {
                    "family": fam,
                    "lr": size,
                    "variant": label,
                    "isa": isas[label],
                    "times_s": ts,
                    "vs_native_avx512": ratio,
                }
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
