"""Where the time goes: each fused op of the plan timed alone, Triton conv2d_fused vs cuDNN.

    python benchmarks/profile_ops.py --preset 270p --batch 8 --dtype fp16

For every distinct op shape (head, block conv with PReLU, block conv with skip, upsample,
tail) it times our kernel (with its epilogue) and F.conv2d on channels_last tensors (conv
and bias only, so cuDNN gets the easier job), with CUDA events, median of repeats, and
prints a markdown table with ms per call, calls per frame batch and TFLOP/s. A second table
times one residual block of the body as one resblock_fused launch against its two
conv2d_fused launches (the candidate behind the triton_fused backend).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_fast.bench import PRESETS, cuda_time, parse_size  # noqa: E402
from srgan_fast.plan import compile_plan  # noqa: E402
from srgan_fast.weights import load_generator  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="270p", type=parse_size, help=f"LR size: {', '.join(PRESETS)} or WxH")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="storage dtype")
    p.add_argument("--model", default="srresnet_x4", help="bundled name or .safetensors")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_ops needs a CUDA GPU", file=sys.stderr)
        return 2
    from srgan_fast.kernels.conv2d_fused import conv2d_fused, pack_bias, pack_weight

    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    w, h = args.preset
    n = args.batch
    plan = compile_plan(load_generator(args.model)).to("cuda")
    seen: dict = {}
    for op in plan.ops:
        key = (op.kind, op.cin, op.cout, op.k, op.scale_in, op.shuffle, op.skip is not None, op.prelu is not None)
        seen.setdefault(key, [op, 0])[1] += 1
    rows = []
    for (kind, cin, cout, k, s, shuffle, has_skip, _), (op, count) in seen.items():
        hh, ww = h * s, w * s
        x = torch.rand(n, hh, ww, cin, device="cuda").to(dt)
        wp = pack_weight(op.weight, dt, shuffle=shuffle)
        bp = pack_bias(op.bias, shuffle=shuffle)
        oc, so = (cout // 4, 2) if shuffle else (cout, 1)
        skip = torch.rand(n, hh * so, ww * so, oc, device="cuda").to(dt) if has_skip else None
        out_u8 = kind == "tail"
        out = torch.empty(n, hh * so, ww * so, oc, device="cuda", dtype=torch.uint8 if out_u8 else dt)

        ours = functools.partial(
            conv2d_fused, x, wp, bp, k, prelu=op.prelu, skip=skip, shuffle=shuffle,
            out_map=op.out_map, out_u8=out_u8, out=out,
        )  # fmt: skip
        tma = functools.partial(ours, impl="tma")  # the triton_tma backend's loop (pointer where TMA cannot)
        xc = x.permute(0, 3, 1, 2)  # channels_last NCHW view
        wc = op.weight.to(dt).contiguous(memory_format=torch.channels_last)
        cudnn = functools.partial(F.conv2d, xc, wc, op.bias.to(dt), padding=k // 2)

        t_ours, t_tma, t_cudnn = cuda_time(ours), cuda_time(tma), cuda_time(cudnn)
        flop = 2 * n * hh * ww * cin * cout * k * k
        shape = f"{cin}->{cout} k{k} @{s}x" + (" shuffle" if shuffle else "")
        rows.append((kind, shape, count, t_ours, t_tma, t_cudnn, flop))
    total_ours = sum(r[2] * r[3] for r in rows)
    total_tma = sum(r[2] * r[4] for r in rows)
    total_cudnn = sum(r[2] * r[5] for r in rows)
    print(f"device: {torch.cuda.get_device_name()}; LR {w}x{h} batch {n} {args.dtype}")
    print("ours = conv2d_fused's pointer loop (backend triton), TMA = its tensor-descriptor loop (triton_tma)")
    print("| op | shape | calls | ours ms | ours TFLOP/s | TMA ms | TMA TFLOP/s | cuDNN conv ms | cuDNN TFLOP/s "
          "| share of ours |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, shape, count, to, tt, tc, flop in rows:
        print(
            f"| {kind} | {shape} | {count} | {to:.3f} | {flop / to / 1e9:.0f} | {tt:.3f} | {flop / tt / 1e9:.0f} "
            f"| {tc:.3f} | {flop / tc / 1e9:.0f} | {count * to / total_ours:.0%} |"
        )
    print(f"| **sum over the plan** | | | **{total_ours:.2f}** | | **{total_tma:.2f}** | | **{total_cudnn:.2f}** | | |")
    profile_resblock(plan, n, h, w, dt)
    return 0


def profile_resblock(plan, n: int, h: int, w: int, dt: torch.dtype) -> None:
    """One residual block of the body: resblock_fused vs conv2d_fused(+PReLU) then conv2d_fused(+skip)."""
    from srgan_fast.kernels.conv2d_fused import conv2d_fused, pack_weight
    from srgan_fast.kernels.resblock_fused import resblock_fused

    pairs = [(a, b) for a, b in zip(plan.ops, plan.ops[1:]) if (a.kind, b.kind) == ("block_conv1", "block_conv2")]
    if not pairs:
        return
    a, b = pairs[0]
    c, k = a.cin, a.k
    x = torch.rand(n, h, w, c, device="cuda").to(dt)
    w1, w2 = pack_weight(a.weight, dt), pack_weight(b.weight, dt)
    b1, b2, slope = a.bias.float(), b.bias.float(), a.prelu.float()
    t, y = torch.empty_like(x), torch.empty_like(x)

    def two_launches():
        conv2d_fused(x, w1, b1, k, prelu=slope, out=t)
        conv2d_fused(t, w2, b2, k, skip=x, out=y)

    fused = functools.partial(resblock_fused, x, w1, b1, slope, w2, b2, k, out=y)
    t_two, t_fused = cuda_time(two_launches), cuda_time(fused)
    flop = 2 * 2 * n * h * w * c * c * k * k  # two convs (the border recompute not counted)
    print()
    print("| residual block | shape | calls | ms | TFLOP/s | vs two launches |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    shape = f"{c}->{c} k{k} x2"
    print(f"| two conv2d_fused | {shape} | {len(pairs)} | {t_two:.3f} | {flop / t_two / 1e9:.0f} | 1.00x |")
    print(f"| resblock_fused | {shape} | {len(pairs)} | {t_fused:.3f} | {flop / t_fused / 1e9:.0f} "
          f"| {t_two / t_fused:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
