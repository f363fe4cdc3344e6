"""`srgan-fast video`: a video file upscaled; audio/subtitles copied, timestamps kept (io.video)."""

from __future__ import annotations

import json

from ..options import RunOptions
from ._common import add_runtime


def add_parser(sub) -> None:
    v = sub.add_parser("video", help="upscale a video file; audio/subtitles copied, timestamps kept")
    v.add_argument("input", help="input video file")
    v.add_argument("output", help="output video file (.mp4, .mkv, ...)")
    v.add_argument(
        "--codec", default=None,
        help="video encoder (default libx264 for 8-bit sources, libx265 for 10-bit and deeper, else libx264; "
        "a .webm output: libvpx-vp9, else libsvtav1)",
    )  # fmt: skip
    v.add_argument("--crf", type=int, default=18, help="x264/x265 quality, lower is better (default 18)")
    v.add_argument("--bitrate", type=int, default=None, help="target bits/s instead of --crf")
    v.add_argument(
        "--pix-fmt", dest="pix_fmt", default=None,
        help="output pixel format (default: the source's depth, yuv420p or yuv420p10le/12le as the codec takes)",
    )  # fmt: skip
    v.add_argument(
        "--color-matrix", dest="color_matrix", default=None, choices=["bt601", "bt709", "bt2020", "smpte240m", "fcc"],
        help="the matrix the source was really encoded with, when its tag is wrong or missing (the output is tagged "
        "with it). Default: the source's tag; untagged sources are read as players do: BT.601 below 720 lines, "
        "BT.709 from 720 up. Primaries, transfer (PQ/HLG included) and range are kept from the source",
    )
    v.add_argument(
        "--color-range", dest="color_range", default=None, choices=["limited", "full"],
        help="the source's real range when its tag is wrong (default: its tag; untagged: limited, yuvj*: full)",
    )
    v.add_argument("--start", type=float, default=0.0, help="start at this many seconds")
    v.add_argument("--frames", type=int, default=None, help="upscale at most this many frames")
    v.add_argument("--batch", type=int, default=1, help="frames per engine call (default 1)")
    v.add_argument(
        "--skip-bad-frames", dest="skip_bad_frames", action="store_true",
        help="skip frames the decoder cannot decode (counted and reported) instead of stopping",
    )  # fmt: skip
    add_runtime(v, "auto")
    v.set_defaults(func=run)


def run(args) -> int:
    from ..io.video import upscale_video

    res = upscale_video(
        args.input, args.output, RunOptions.from_args(args), batch=args.batch, codec=args.codec, crf=args.crf,
        bitrate=args.bitrate, pix_fmt=args.pix_fmt, color_matrix=args.color_matrix, color_range=args.color_range,
        start=args.start, max_frames=args.frames, progress=not args.quiet, skip_bad_frames=args.skip_bad_frames,
    )  # fmt: skip
    print(json.dumps(res))
    return 0
