"""What the card actually loaded: registers, spills and shared memory of every compiled Triton
kernel after one batch per Triton backend (autotuning included), the configs the autotuners
chose, and the same facts from the static check (benchmarks/kernel_check.py --json) beside them.

    python benchmarks/kernel_check.py --json static.json      # any machine (no GPU needed)
    python benchmarks/loaded_kernels.py --static static.json  # on the card

A row whose registers differ from the static table means the card's Triton/ptxas is not the one
the static check used (pin triton==3.6.0), and the static figures should not be trusted there.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

KERNELS = (("pointer", "_conv2d_fused_kernel", "_conv2d_fused_tuned"),
           ("tma", "_conv2d_fused_tma_kernel", "_conv2d_fused_tma_tuned"),
           ("resblock", "_resblock_fused_kernel", "_resblock_fused_tuned"))  # fmt: skip
CONFIG_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "TILE_H", "TILE_W")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--static", help="kernel_check.py --json output to compare against")
    p.add_argument("--batch", type=int, default=8, help="frames per batch (default 8)")
    p.add_argument("--size", default="270x480", help="LR HxW (default 270x480)")
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"), help="storage dtype (default fp16)")
    p.add_argument("--backends", default="triton,triton_tma,triton_fused", help="comma-separated Triton backends")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("loaded_kernels needs a CUDA GPU", file=sys.stderr)
        return 2
    from srgan_fast import Engine
    from srgan_fast.kernels import conv2d_fused as cf
    from srgan_fast.kernels import resblock_fused as rf

    h, w = (int(v) for v in args.size.split("x"))
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    x = torch.rand(args.batch, h, w, 3, device="cuda")
    for b in args.backends.split(","):
        Engine("srresnet_x4", device="cuda", dtype=dt, backend=b).upscale(x)
    torch.cuda.synchronize()
    static = json.load(open(args.static)) if args.static else []
    mods = {"pointer": cf, "tma": cf, "resblock": rf}
    print(f"# Loaded Triton kernels on {torch.cuda.get_device_name()} (torch {torch.__version__})\n")
    print("| kernel | K | CIN | epilogue | config | chosen | regs | spills | shared | static regs/local/shared "
          "| match |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    mismatches = 0
    for kind, name, tuned in KERNELS:
        fn = getattr(mods[kind], name)
        chosen = {tuple(sorted(c.all_kwargs().items())) for c in getattr(mods[kind], tuned).cache.values()}
        for cache in fn.device_caches.values():
            for k in cache[0].values():
                k._init_handles()
                consts = {fn.arg_names[path[0]]: v for path, v in k.src.constants.items() if len(path) == 1}
                cfg = {key: consts[key] for key in CONFIG_KEYS if key in consts}
                cfg.update(num_warps=k.metadata.num_warps, num_stages=k.metadata.num_stages)
                is_chosen = any(all(dict(c).get(key) == v for key, v in cfg.items()) for c in chosen)
                ep = ",".join(f for f in ("HAS_PRELU", "HAS_SKIP", "SHUFFLE", "OUT_U8") if consts.get(f))
                ep += f",map{consts['OUT_MAP']}" if consts.get("OUT_MAP") else ""
                match = [r for r in static if r.get("kernel") == kind and "error" not in r
                         and all(r["config"].get(key) == v for key, v in cfg.items())
                         and all(consts.get(key) == v for key, v in r.get("constexprs", {}).items())]  # fmt: skip
                st = f"{match[0]['regs']}/{match[0]['local']}/{match[0]['shared']}" if match else "-"
                ok = "-" if not match else ("yes" if match[0]["regs"] == k.n_regs else "**no**")
                mismatches += ok == "**no**"
                print(f"| {kind} | {consts.get('K')} | {consts.get('CIN', consts.get('C'))} | {ep} | {cfg} | "
                      f"{'yes' if is_chosen else ''} | {k.n_regs} | {k.n_spills} | {k.metadata.shared} | {st} "
                      f"| {ok} |")  # fmt: skip
    print(f"\n{mismatches} loaded kernels differ from the static table in registers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
