"""`srgan-fast upscale`: image files and folders (io.batch; --ray: io.ray)."""

from __future__ import annotations

import sys

from ..options import RunOptions
from ._common import add_runtime


def add_parser(sub) -> None:
    u = sub.add_parser("upscale", help="upscale image files or folders")
    u.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    u.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    u.add_argument("--batch", type=int, default=1, help="run up to N same-size images together (default 1)")
    u.add_argument(
        "--on-error", dest="on_error", default="fail", choices=["fail", "skip"],
        help="unreadable input: stop (fail, default) or report it and go on (skip; exit 2 when every input "
        "was skipped and nothing was written)",
    )  # fmt: skip
    u.add_argument(
        "--max-pixels", dest="max_pixels", type=int, default=4096 * 4096,
        help="refuse inputs larger than this many pixels, read from the file header before decoding "
        "(default 16777216 = 4096x4096; 0 = no limit)",
    )  # fmt: skip
    u.add_argument(
        "--quality", type=int, default=None, metavar="1-100",
        help="JPEG/WebP output quality (default 95, JPEG with full-resolution chroma); PNG/TIFF are lossless",
    )  # fmt: skip
    u.add_argument("--ray", action="store_true", help="run on Ray Data (one engine per actor); pip install 'ray[data]'")
    u.add_argument("--workers", type=int, default=2, help="--ray: number of engine actors (default 2)")
    u.add_argument(
        "--gpus-per-worker", dest="gpus_per_worker", type=float, default=0,
        help="--ray: GPUs per actor (e.g. 1 with --device cuda)",
    )  # fmt: skip
    add_runtime(u, "auto")
    u.set_defaults(func=run)


def run(args) -> int:
    opts = RunOptions.from_args(args)
    if args.ray:
        from ..io.ray import upscale_files_ray

        if args.quality is not None:
            from ..errors import UsageError

            raise UsageError("--quality is not passed to --ray workers yet; they write JPEG/WebP at quality 95")

        outs = upscale_files_ray(
            args.inputs, args.output, opts, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
            batch=max(1, args.batch), on_error=args.on_error, max_pixels=args.max_pixels,
        )  # fmt: skip
    else:
        from ..io.batch import upscale_files

        outs = upscale_files(
            args.inputs, args.output, opts, batch=args.batch, on_error=args.on_error, progress=not args.quiet,
            max_pixels=args.max_pixels, quality=args.quality,
        )  # fmt: skip
    for o in outs:
        print(o)
    if not outs and args.on_error == "skip":
        # "skip" lets a batch survive bad files; a run that wrote nothing is still a failure
        print("srgan-fast upscale: error: every input was skipped; nothing was written", file=sys.stderr)
        return 2
    return 0
