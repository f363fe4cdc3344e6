"""`srgan-fast demo`: the bundled photo downscaled 4x, upscaled back, scored (quality.demo)."""

from __future__ import annotations

from ..options import RunOptions
from ._common import add_runtime


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="downscale the bundled photo 4x, upscale it back, print PSNR")
    d.add_argument("--out", default="demo_out", help="folder for lr/bicubic/sr/hr PNGs")
    add_runtime(d, "reference", tile=False, quiet=False)
    d.set_defaults(func=run)


def run(args) -> int:
    from ..quality.demo import demo

    demo(out_dir=args.out, options=RunOptions.from_args(args))
    return 0
