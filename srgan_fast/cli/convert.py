"""`srgan-fast convert`: a checkpoint of any registered family to safetensors (weights.convert)."""

from __future__ import annotations

import argparse
import json


def _convert_names() -> list[str]:
    from ..families import families

    return [f.convert_name for f in families().values() if f.convert_name and f.convert is not None]


def _parse_range(s: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected -1,1 or 0,1, got {s!r}") from None
    if (lo, hi) not in ((-1.0, 1.0), (0.0, 1.0)):
        raise argparse.ArgumentTypeError(f"expected -1,1 or 0,1, got {s!r}")
    return lo, hi


def add_parser(sub) -> None:
    c = sub.add_parser(
        "convert",
        help="convert a checkpoint (ours, another SRResNet/SRGAN layout, SRVGGNetCompact, MSRResNet or RRDBNet) "
        "to safetensors",
    )
    c.add_argument("src", help="the .pth/.pt checkpoint (loaded with weights_only=True) or a .safetensors file")
    c.add_argument("dst", help="the .safetensors file to write")
    c.add_argument(
        "--family", default="auto", choices=["auto", *_convert_names()],
        help="srresnet = the paper's network in any key layout; compact = Real-ESRGAN SRVGGNetCompact "
        "(body.N keys); msrresnet = BasicSR MSRResNet; rrdbnet = ESRGAN / Real-ESRGAN RRDBNet (BasicSR, "
        "ESRGAN or old ESRGAN keys); auto = the family whose layout the keys match, else srresnet (default)",
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
    c.set_defaults(func=run)


def run(args) -> int:
    from ..weights.convert import convert

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
