"""Per-op A/B of the RGB tails: the channel-vectorised kernel against the pixel-vectorised one
(SRGAN_FAST_DIRECT_PX=1), interleaved in one process.

    python benchmarks/results/cpu_2026-12-06/after_s4/tail_ab.py
"""

import os
import time

import torch

from srgan_fast.backends import native

torch.set_num_threads(2)

CASES = (
    ("3x3 64->3 +skip at 2160x3840 (MSRResNet/RRDBNet tail, 540p)", (64, 3, 3, 2160, 3840, True), 3),
    ("9x9 64->3 at 512x512 (srresnet_x4 tail, 128x128)", (64, 3, 9, 512, 512, False), 5),
    ("3x3 64->3 +skip at 512x512 (128x128)", (64, 3, 3, 512, 512, True), 9),
)


def case(cin, cout, k, h, w, skip):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, h, w, cin, generator=g)
    wt = torch.randn(cout, cin, k, k, generator=g) * 0.05
    b = torch.zeros(cout)
    s = torch.rand(1, h, w, cout, generator=g) if skip else None
    p = native.pack(wt, b, None, 1)
    y = torch.empty(1, h, w, cout)
    return lambda: native.run_conv(p, x, y, 0, s)


for name, args, n in CASES:
    f = case(*args)
    f()
    t = {"pixel-vectorised (before)": [], "channel-vectorised (after)": []}
    for _ in range(n):
        for label in t:
            if "before" in label:
                os.environ["SRGAN_FAST_DIRECT_PX"] = "1"
            else:
                os.environ.pop("SRGAN_FAST_DIRECT_PX", None)
            time.sleep(0.1)
            t0 = time.perf_counter()
            f()
            t[label].append(time.perf_counter() - t0)
    before, after = (sorted(v)[len(v) // 2] for v in t.values())
    print(f"{name}: before {before * 1e3:.1f} ms, after {after * 1e3:.1f} ms, {before / after:.2f}x")
