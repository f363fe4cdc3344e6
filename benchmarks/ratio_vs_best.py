"""The engine's rows of interleaved `srgan-fast bench` runs against the best alternative.

    python benchmarks/ratio_vs_best.py DIR      # DIR: one bench_engine.jsonl per model (*.jsonl)

For each model: the alternative (eager NCHW, eager channels_last, torch.compile, ONNX Runtime)
with the lowest median, then for each engine row the ratio of that alternative's time to the
row's time in the same round (above 1: the engine is faster), median (min-max) over the rounds.
"""

import glob
import json
import os
import statistics
import sys

ALT = ("eager NCHW", "eager channels_last", "torch.compile", "ONNX Runtime (CPU EP)")
ENGINE = ("engine torch", "engine onnxruntime", "engine onnxruntime_model", "engine auto")


def main(folder: str) -> None:
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        rows = [json.loads(line) for line in open(path)]
        by = {r["method"]: r for r in rows}
        n = min(len(r["times_s"]) for r in rows)
        best_name = min((m for m in ALT if m in by), key=lambda m: by[m]["median_s"])
        best = by[best_name]["times_s"][:n]
        parts = []
        for m in ENGINE:
            if m in by:
                rat = [best[i] / by[m]["times_s"][i] for i in range(n)]
                chose = f" -> {by[m]['engine_backend']}" if m == "engine auto" else ""
                parts.append(f"{m}: {statistics.median(rat):.2f}x ({min(rat):.2f}-{max(rat):.2f}){chose}")
        r0 = rows[0]
        load = f"load {r0['loadavg_1m_start']:.1f}-{r0['loadavg_1m_end']:.1f}"
        print(
            f"{os.path.basename(path)[:-6]} {r0['lr_size']} {load}; "
            f"best alternative: {best_name} {by[best_name]['median_s'] * 1000:.0f} ms; " + "; ".join(parts)
        )


if __name__ == "__main__":
    main(sys.argv[1])
