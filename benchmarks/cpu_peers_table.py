"""Issue 26's verdict table from `benchmarks/cpu_session.sh`'s runs: the engine against the fastest
fp32 peer, and its bf16 against OpenVINO's default (bf16), per family and size.

    python benchmarks/cpu_peers_table.py benchmarks/results/cpu_<date>    # -> markdown on stdout

Each run folder holds one bench_engine.jsonl (interleaved rounds). Ratios are per round (the
peer's time over ours in the same round: above 1 the engine is faster), median (min-max). fp32
peers: eager NCHW/channels_last, torch.compile, ONNX Runtime, OpenVINO f32, ncnn (those a run has).
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys

FP32_PEERS = ("eager NCHW", "eager channels_last", "torch.compile", "ONNX Runtime (CPU EP)", "OpenVINO f32", "ncnn")


def _ratio(num: list[float], den: list[float]) -> str:
    n = min(len(num), len(den))
    r = [num[i] / den[i] for i in range(n)]
    return f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


def _err(row) -> str:
    return f"{row['max_abs_err_vs_fp32']:.1e} / {100 * row['u8_changed_share']:.1f}%"


def main(folder: str) -> None:
    print(
        "| run | LR | fastest fp32 peer | engine auto fp32 | vs it | engine native fp32 | vs it "
        "| OpenVINO default (bf16) | engine native bf16 | vs it "
        "| error: OpenVINO bf16 / native bf16 (max abs / uint8 changed) |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for path in sorted(glob.glob(os.path.join(folder, "*", "bench_engine.jsonl"))):
        rows = [json.loads(line) for line in open(path)]
        by = {(r["method"].split(" (->")[0], r["dtype"]): r for r in rows}
        run = os.path.basename(os.path.dirname(path))
        peers = [by[(m, "fp32")] for m in FP32_PEERS if (m, "fp32") in by]
        if not peers:
            continue
        best = min(peers, key=lambda r: r["median_s"])
        lr = rows[0]["lr_size"]

        def cell(key, against, by=by):
            if key not in by:
                return "-", "-"
            r = by[key]
            name = f"{r['median_s'] * 1e3:.0f} ms"
            if r["method"].startswith("engine auto"):
                name += f" ({r.get('engine_backend', '?')})"
            return name, _ratio(against["times_s"], r["times_s"]) if against else "-"

        auto, auto_r = cell(("engine auto", "fp32"), best)
        nat, nat_r = cell(("engine native", "fp32"), best)
        ov = by.get(("OpenVINO default", "bf16"))
        nb, nb_r = cell(("engine native", "bf16"), ov)
        ov_s = f"{ov['median_s'] * 1e3:.0f} ms" if ov else "-"
        errs = f"{_err(ov)} / {_err(by[('engine native', 'bf16')])}" if ov and ("engine native", "bf16") in by else "-"
        print(
            f"| {run} | {lr} | {best['method']} {best['median_s'] * 1e3:.0f} ms | {auto} | {auto_r} | {nat} | {nat_r} "
            f"| {ov_s} | {nb} | {nb_r} | {errs} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
