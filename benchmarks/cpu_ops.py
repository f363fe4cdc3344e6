"""Per-op CPU timing of the native backend's kernels against the torch backend's aten ops.

For each distinct conv of a family's plan (kind, shape, resolution), at the frame size the
network gives it: the torch backend's op (F.conv2d channels_last + the same epilogue), native
Winograd (the backend's choice where it applies) and native direct, interleaved rounds with a
pause before each timed call (--pause 0 for short ops: after a sleep, OpenMP's threads must
be woken, which a network's back-to-back convs do not pay); median ms, effective GFLOP/s (2 x
the direct conv's MACs / time) and share of the network's time (count x median).

    python benchmarks/cpu_ops.py srresnet_x4 [--size 128] [--rounds 5] [--dtype fp32|bf16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from srgan_fast.backends import native
from srgan_fast.engine import Engine

FAMILIES = {
    "srresnet_x4": lambda: "srresnet_x4",
    "compact": lambda: __import__("srgan_fast.compact", fromlist=["x"]).random_compact("realesr-animevideov3"),
    "msrresnet": lambda: __import__("srgan_fast.msrresnet", fromlist=["x"]).random_msrresnet(),
    "rrdbnet": lambda: __import__("srgan_fast.rrdbnet", fromlist=["x"]).random_rrdbnet(),
}


def _torch_op(op, x_nchw, skip, dtype):
    w, b = op.weight.to(dtype).contiguous(memory_format=torch.channels_last), op.bias.to(dtype)
    a = op.prelu.to(dtype) if op.prelu is not None else None

    def fn():
        y = F.conv2d(x_nchw, w, b, padding=op.k // 2)
        if op.shuffle:
            y = F.pixel_shuffle(y, op.shuffle_r).contiguous(memory_format=torch.channels_last)
        if a is not None:
            y = F.prelu(y, a)
        if skip is not None:
            y = y.add_(skip)
        return y

    return fn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=list(FAMILIES), help="the network whose convs are timed")
    ap.add_argument("--size", type=int, default=128, help="LR frame side (default 128)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (default 5)")
    ap.add_argument("--pause", type=float, default=0.1, help="seconds of sleep before each timed call")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="native kernels' dtype (torch's too)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    plan = Engine(FAMILIES[args.family](), device="cpu", backend="torch").plan
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    bf16 = dtype == torch.bfloat16
    groups: dict[tuple, list] = {}
    for op in plan.ops:
        key = (op.kind, op.cin, op.cout, op.k, op.scale_in, op.shuffle, op.skip is not None, op.skip_up)
        groups.setdefault(key, []).append(op)
    rows = []
    for ops in groups.values():
        op = ops[0]
        s = args.size * op.scale_in
        x = torch.rand(1, s, s, op.cin)
        rs = op.shuffle_r if op.shuffle else 1
        out_c = op.out_channels
        skip_nhwc = torch.rand(1, s * rs, s * rs, out_c) if op.skip is not None and op.skip_up == 1 else None
        fns = {}
        x_cl = x.permute(0, 3, 1, 2).to(dtype)
        sk = skip_nhwc.permute(0, 3, 1, 2).to(dtype) if skip_nhwc is not None else None
        fns["torch"] = _torch_op(op, x_cl, sk, dtype)
        y = torch.empty(1, s * rs, s * rs, out_c)
        for name, wino in (("native", None), ("native direct", False)):
            if name == "native direct" and not native.uses_winograd(op):
                continue
            p = native.pack(op.weight, op.bias, op.prelu, rs, bf16, wino)
            fns[name] = lambda p=p, x=x, y=y, sk=skip_nhwc: native.run_conv(p, x, y, 0, sk)
        for f in fns.values():
            f()
        ts = {k: [] for k in fns}
        for r in range(args.rounds):
            order = list(fns.items())
            for k, f in order if r % 2 == 0 else order[::-1]:
                time.sleep(args.pause)
                t = time.perf_counter()
                f()
                ts[k].append(time.perf_counter() - t)
        macs = s * s * op.cin * op.cout * op.k * op.k
        med = {k: statistics.median(v) for k, v in ts.items()}
        rows.append(
            {
                "op": f"{op.kind} {op.cin}->{op.cout} {op.k}x{op.k} @{s}"
                + (" +shuffle" if op.shuffle else "")
                + (" +skip" if op.skip is not None else ""),
                "count": len(ops),
                "winograd": native.uses_winograd(op),
                "ms": {k: v * 1e3 for k, v in med.items()},
                "gflops": {k: 2 * macs / v / 1e9 for k, v in med.items()},
            }
        )
    total = {k: sum(r["ms"].get(k, r["ms"]["native"]) * r["count"] for r in rows) for k in ("torch", "native")}
    print(f"{args.family} {args.size}x{args.size} {args.dtype}, {torch.get_num_threads()} threads, isa {native.isa()}")
    print(
        "| op | count | torch ms | native ms | native direct ms | native vs torch | native GFLOP/s (eff.) "
        "| share of native |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ms = r["ms"]
        direct = f"{ms['native direct']:.2f}" if "native direct" in ms else "-"
        share = ms["native"] * r["count"] / total["native"]
        print(
            f"| {r['op']} | {r['count']} | {ms['torch']:.2f} | {ms['native']:.2f} | {direct} | "
            f"{ms['torch'] / ms['native']:.2f}x | {r['gflops']['native']:.0f} | {share:.0%} |"
        )
    print(f"| sum (count x median) | | {total['torch']:.1f} | {total['native']:.1f} | | "
          f"{total['torch'] / total['native']:.2f}x | | |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"family": args.family, "size": args.size, "dtype": args.dtype, "isa": native.isa(),
                       "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
