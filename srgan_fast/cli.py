"""The `srgan-fast` command. argparse lives here only; every command is a plain function."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from .options import RunOptions


def _convert_names() -> list[str]:
    from .families import families

    return [f.convert_name for f in families().values() if f.convert_name and f.convert is not None]


def _cmd_models(args) -> int:
    from .families import get_family
    from .weights import bundled_models

    models = bundled_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no bundled models")
    else:
        print("| name | family | scale | layers x channels | Set5 PSNR/SSIM | Set14 PSNR/SSIM | trained |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in models:
        if "error" in m:
            print(f"| {m['name']} | error: {m['error']} |")
            continue
        c, card = m["config"], m["card"]
        ev = card.get("eval", {})

        def cell(name, ev=ev):
            e = ev.get(name)
            return f"{e['psnr']:.2f} / {e['ssim']:.4f}" if e else "-"

        fam = m.get("family", "srresnet")
        try:
            describe = get_family(fam).describe
        except ValueError:
            describe = None
        shape, scale = describe(c) if describe else ("?", c.get("scale", "?"))
        print(
            f"| {m['name']} | {fam} | x{scale} | {shape} | "
            f"{cell('Set5')} | {cell('Set14')} | {card.get('trained', '-')} |"
        )
    if not args.quiet:
        print(_BRING_YOUR_OWN)
    return 0


_BRING_YOUR_OWN = """
Bring your own model (any command takes --model path.safetensors; nothing is registered or downloaded):
  * an SRResNet/SRGAN generator from another codebase (PyTorch .pth/.pt loaded with weights_only=True,
    or .safetensors; keys may differ if the layers are the paper's, with or without BN):
      srgan-fast convert their_generator.pth mine.safetensors [--output-range 0,1] [--module their.py:Class]
  * Real-ESRGAN's compact video models (SRVGGNetCompact: realesr-animevideov3, realesr-general-x4v3):
      srgan-fast convert realesr-animevideov3.pth animevideov3.safetensors
  * BasicSR's MSRResNet (x2/x4; params / params_ema checkpoints):
      srgan-fast convert msrresnet_x4.pth msrresnet.safetensors
  * then: srgan-fast upscale IN -o OUT --model mine.safetensors   (also video, eval, bench, export)
  * to bundle one with the package, copy the .safetensors into srgan_fast/weights/ (its name becomes
    the model name); `srgan-fast export MODEL OUT.onnx` takes a model to ONNX Runtime/TensorRT."""


def _cmd_eval(args) -> int:
    from .evaluate import evaluate, format_table

    res = evaluate(
        args.data, method=args.method, scale=args.scale, options=RunOptions.from_args(args), json_path=args.json,
        progress=not args.quiet,
    )  # fmt: skip
    print(format_table(res))
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _cmd_upscale(args) -> int:
    opts = RunOptions.from_args(args)
    if args.ray:
        from .ray import upscale_files_ray

        if args.quality is not None:
            from .errors import UsageError

            raise UsageError("--quality is not passed to --ray workers yet; they write JPEG/WebP at quality 95")

        outs = upscale_files_ray(
            args.inputs, args.output, opts, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
            batch=max(1, args.batch), on_error=args.on_error, max_pixels=args.max_pixels,
        )  # fmt: skip
    else:
        from .upscale import upscale_files

        outs = upscale_files(
            args.inputs, args.output, opts, batch=args.batch, on_error=args.on_error, progress=not args.quiet,
            max_pixels=args.max_pixels, quality=args.quality,
        )  # fmt: skip
    for o in outs:
        print(o)
    return 0


def _parse_range(s: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected -1,1 or 0,1, got {s!r}") from None
    if (lo, hi) not in ((-1.0, 1.0), (0.0, 1.0)):
        raise argparse.ArgumentTypeError(f"expected -1,1 or 0,1, got {s!r}")
    return lo, hi


def _cmd_convert(args) -> int:
    from .convert import convert

    try:
        kwargs = json.loads(args.module_args) if args.module_args else None
    except json.JSONDecodeError as e:
        raise ValueError(f"--module-args is not valid JSON ({e})") from None
    rep = convert(
        args.src, args.dst, family=args.family, config=args.config, output_range=args.output_range,
        module=args.module, module_kwargs=kwargs, act=args.act,
    )  # fmt: skip
    print(rep)
    return 0


def _cmd_export(args) -> int:
    from .export import export

    path, diff = export(args.model, args.out, fp16=args.fp16, opset=args.opset, tolerance=args.tolerance)
    print(f"{path}: ONNX Runtime vs engine (torch backend, fp32), max abs diff {diff:.3g}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import demo

    demo(out_dir=args.out, options=RunOptions.from_args(args))
    return 0


def _cmd_video(args) -> int:
    from .video import upscale_video

    res = upscale_video(
        args.input, args.output, RunOptions.from_args(args), batch=args.batch, codec=args.codec, crf=args.crf,
        bitrate=args.bitrate, pix_fmt=args.pix_fmt, color_matrix=args.color_matrix, color_range=args.color_range,
        start=args.start, max_frames=args.frames, progress=not args.quiet, skip_bad_frames=args.skip_bad_frames,
    )  # fmt: skip
    print(json.dumps(res))
    return 0


def _cmd_gst_env(args) -> int:
    from .gst import gst_env, gst_env_script, missing

    env = gst_env()
    if args.check:  # before printing: a shell that evals the output gets nothing on failure
        import subprocess

        why = missing()
        if why is None:
            r = subprocess.run(["gst-inspect-1.0", "srganfast"], env={**os.environ, **env}, capture_output=True,
                               text=True)  # fmt: skip
            why = None if r.returncode == 0 else "gst-inspect-1.0 cannot load srganfast:\n" + (r.stderr or r.stdout)
        if why is not None:
            print(f"srgan-fast gst-env: {why}", file=sys.stderr)
            return 2
    sys.stdout.write(gst_env_script(env))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="srgan-fast",
        description="SRGAN super-resolution: reference model, trainer and fast engine.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list the bundled models and their measured quality")
    m.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    m.add_argument("-q", "--quiet", action="store_true", help="only the table, without how to bring your own")
    m.set_defaults(func=_cmd_models)

    def add_runtime(sp, backend_default, model=True, tile=True, quiet=True):
        RunOptions.add_arguments(sp, backend_default, model=model, tile=tile)
        if quiet:
            sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

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
    e.set_defaults(func=_cmd_eval)

    u = sub.add_parser("upscale", help="upscale image files or folders")
    u.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    u.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    u.add_argument("--batch", type=int, default=1, help="run up to N same-size images together (default 1)")
    u.add_argument(
        "--on-error", dest="on_error", default="fail", choices=["fail", "skip"],
        help="unreadable input: stop (fail, default) or report it and go on (skip)",
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
    u.set_defaults(func=_cmd_upscale)

    c = sub.add_parser(
        "convert", help="convert a checkpoint (ours, another SRResNet/SRGAN layout, or SRVGGNetCompact) to safetensors"
    )
    c.add_argument("src", help="the .pth/.pt checkpoint (loaded with weights_only=True) or a .safetensors file")
    c.add_argument("dst", help="the .safetensors file to write")
    c.add_argument(
        "--family", default="auto", choices=["auto", *_convert_names()],
        help="srresnet = the paper's network in any key layout; compact = Real-ESRGAN SRVGGNetCompact "
        "(body.N keys); auto = the family whose layout the keys match, else srresnet (default)",
    )  # fmt: skip
    c.add_argument(
        "--config", default=None, help="srresnet: a generator preset it must match (default: read off its shapes)"
    )
    c.add_argument(
        "--output-range", dest="output_range", type=_parse_range, default=None,
        help="what the source model outputs: -1,1 (the paper's; write --output-range=-1,1) or 0,1 (folded into "
        "the last conv); default -1,1 for srresnet, 0,1 for compact",
    )  # fmt: skip
    c.add_argument(
        "--module", default=None, metavar="FILE.py:CLASS",
        help="the source model's code: build CLASS from FILE (runs that file) and check parity against it; "
        "without it, a self-check",
    )  # fmt: skip
    c.add_argument("--module-args", dest="module_args", default=None, help="JSON keyword arguments for CLASS")
    c.add_argument(
        "--act", default=None, choices=["prelu", "relu", "leakyrelu"],
        help="compact: the activation when the file has no PReLU weights (relu/leakyrelu leave none)",
    )  # fmt: skip
    c.set_defaults(func=_cmd_convert)

    x = sub.add_parser("export", help="export a model to ONNX (dynamic N/H/W, [0,1] I/O), checked in ONNX Runtime")
    x.add_argument("model", help="bundled model name or .safetensors path (either family)")
    x.add_argument("out", help="the .onnx file to write")
    x.add_argument("--fp16", action="store_true", help="float16 weights and I/O (default float32)")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, at least 11)")
    x.add_argument(
        "--tolerance", type=float, default=None,
        help="refuse the export when ONNX Runtime differs from the engine by more (max abs, [0,1] units; "
        "default 1e-4 fp32, 1e-2 fp16)",
    )  # fmt: skip
    x.set_defaults(func=_cmd_export)

    d = sub.add_parser("demo", help="downscale the bundled photo 4x, upscale it back, print PSNR")
    d.add_argument("--out", default="demo_out", help="folder for lr/bicubic/sr/hr PNGs")
    add_runtime(d, "reference", tile=False, quiet=False)
    d.set_defaults(func=_cmd_demo)

    v = sub.add_parser("video", help="upscale a video file; audio/subtitles copied, timestamps kept")
    v.add_argument("input", help="input video file")
    v.add_argument("output", help="output video file (.mp4, .mkv, ...)")
    v.add_argument(
        "--codec", default=None,
        help="video encoder (default libx264 for 8-bit sources, libx265 for 10-bit and deeper, else libx264)",
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
    v.set_defaults(func=_cmd_video)

    b = sub.add_parser(
        "bench",
        help="time the engine against eager PyTorch, torch.compile and ONNX Runtime (see its --help)",
        add_help=False,
    )
    b.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")

    g = sub.add_parser(
        "gst-env",
        help='print the shell exports that let GStreamer load the srganfast element: eval "$(srgan-fast gst-env)"',
    )
    g.add_argument(
        "--check", action="store_true", help="first check that gst-inspect-1.0 loads srganfast (exit 2 if not)"
    )
    g.set_defaults(func=_cmd_gst_env)

    t = sub.add_parser("train", help="train a model (same as python -m training; see its --help)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the trainer")
    return p


# commands with their own parsers, dispatched before argparse (its REMAINDER drops --options);
# their subparsers above exist for `srgan-fast --help` only
_PASS_THROUGH = {"bench", "train"}


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # run as the `srgan-fast` program, not called from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "srgan-fast"
    try:
        from .plugins import load_plugins

        load_plugins()  # third-party backends and families, before any choices are listed
        if argv and argv[0] in _PASS_THROUGH:
            if argv[0] == "bench":
                from .bench import main as bench_main

                return bench_main(argv[1:], prog="srgan-fast bench")
            from .training.__main__ import main as train_main

            return train_main(argv[1:])
        args = build_parser().parse_args(argv)
        from .errors import SignalGuard

        with SignalGuard():  # SIGTERM ends like Ctrl-C: files closed, one line
            return args.func(args)
    except KeyboardInterrupt as e:
        # Ctrl-C / SIGTERM: the command has already closed its files; one line, exit 128 + signal
        if program:  # the program is ending: a further Ctrl-C must not print a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.environ.get("SRGAN_FAST_DEBUG"):
            raise
        from .errors import Interrupted

        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        print(f"srgan-fast {command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + int(signum)
    except Exception as e:
        # user errors (bad file, bad model, unwritable folder, missing device, out of memory) end
        # with one line and exit 2; anything else is a bug and keeps its traceback (exit 1).
        # SRGAN_FAST_DEBUG=1 shows the trace of user errors too.
        from .errors import user_message

        msg = user_message(e)
        if msg is None or os.environ.get("SRGAN_FAST_DEBUG"):
            raise
        print(f"srgan-fast {command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
