"""`srgan-fast eval`: Y-PSNR/SSIM and texture of a method on a dataset (quality.evaluate)."""

from __future__ import annotations

import sys

from ..options import RunOptions
from ._common import add_runtime


def add_parser(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="Y-PSNR/SSIM of a method on a dataset, as SR papers report it, and its texture "
        "(mean Y gradient magnitude over the HR image's: 1.0 = as much fine detail as the photo)",
    )
    e.add_argument("--data", required=True, help="dataset folder (with HR/ inside, or of HR images)")
    e.add_argument(
        "--method",
        default="bicubic",
        help="bicubic, a bundled model name, a .safetensors file, or a folder of SR outputs",
    )
    e.add_argument("--scale", type=int, default=None, help="scale (default: the model's, else 4)")
    e.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_runtime(e, "reference", model=False)
    e.set_defaults(func=run)


def run(args) -> int:
    from ..quality.evaluate import evaluate, format_table

    res = evaluate(
        args.data, method=args.method, scale=args.scale, options=RunOptions.from_args(args), json_path=args.json,
        progress=not args.quiet,
    )  # fmt: skip
    print(format_table(res))
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
